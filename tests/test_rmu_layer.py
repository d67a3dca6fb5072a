"""RMU steers decoder layer `rmu_layer`'s own output, for every layer including the last (where transformers'
hidden_states[L] is the final-normed state instead), and keeps float64 in float64."""

import pytest
import torch

from hf_unlearn.methods import losses
from hf_unlearn.methods import METHODS, MethodSettings


def _batch(tokenizer):
    from hf_unlearn.data.formatting import encode_qa
    from hf_unlearn.data.pairing import UnlearningCollator

    rows = [encode_qa(tokenizer, "Who is X?", "X is a writer."), encode_qa(tokenizer, "Where?", "In Lisbon, 1990.")]
    collate = UnlearningCollator(tokenizer)
    part = collate.pad([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])
    return {"forget": part, "retain": part}


@pytest.mark.parametrize("layer", [0, 1])  # 1 is the last of 2 layers
def test_rmu_steers_the_decoder_layer_output_in_float64(layer, tokenizer, make_model):
    from hf_unlearn.models.reference import ReferenceModel

    model = make_model(num_hidden_layers=2).double()
    batch = _batch(tokenizer)
    part = batch["forget"]
    seen = []
    handle = model.model.layers[layer].register_forward_hook(lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        normed = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"],
                       output_hidden_states=True).hidden_states[layer + 1]
    handle.remove()
    hooked = seen[0]
    assert hooked.dtype == torch.float64
    if layer == 1:  # the last layer: hidden_states[L] is norm(output), not the layer's output
        torch.testing.assert_close(normed, model.model.norm(hooked))
        assert not torch.allclose(normed, hooked)

    control = torch.rand(model.config.hidden_size, dtype=torch.float64) * 3
    settings = MethodSettings(rmu_layer=layer, rmu_control=control, retain_weight=1.0, forget_weight=1.0)
    loss, logs = METHODS["rmu"](model, batch, ReferenceModel(model), settings)
    mask = part["labels"] != losses.IGNORE_INDEX
    expected = ((hooked[mask] - control) ** 2).mean()  # mean over answer positions and hidden units
    assert loss.dtype == torch.float64 and logs["forget_loss"].dtype == torch.float64
    torch.testing.assert_close(logs["forget_loss"], expected, rtol=1e-12, atol=0)
    # retain: the policy against the reference at the same layer; here they are the same model, so exactly 0
    assert logs["retain_loss"].item() == 0.0 and logs["retain_loss"].dtype == torch.float64
