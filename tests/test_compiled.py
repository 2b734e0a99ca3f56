"""One traced train step for the folds of a run: `modeling.compiled.compile_for_run`."""

import keras
import numpy as np

from fivek_utils.modeling.backbones import set_trainable, tiny_backbone
from fivek_utils.modeling.compiled import compile_for_run
from fivek_utils.modeling.models import build_model
from fivek_utils.modeling.optim import make_optimizer, warmup_cosine

from test_training import tiny_data


def _opt(lr=1e-2, steps=8):
    return lambda: make_optimizer(warmup_cosine(lr, steps, 2), 1e-4)


def _fit(model, data, epochs=2):
    x = data.images.astype("float32")
    y = {"mask": data.labels[:, :1], "distancing": data.labels[:, 1:]}
    return model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0).history["loss"]


def _model():
    model = build_model(tiny_backbone(), None, 0.0)
    set_trainable(model, -1, freeze_batchnorm=False)
    return model


def count_traces(model) -> list:
    """Counts the traces of `model`'s train step: its Python body runs only while tf.function traces it."""
    traces, step = [], model.train_step

    def counted(data):
        traces.append(1)
        return step(data)

    model.train_step = counted
    return traces


def test_a_second_run_with_the_same_settings_reuses_the_traced_step_and_trains_as_a_fresh_compile():
    data = tiny_data(32)
    model = _model()
    traces = count_traces(model)
    initial = model.get_weights()
    assert compile_for_run(model, ("a",), _opt()) is False
    first = _fit(model, data)
    step, traced = model.train_function, len(traces)
    assert traced == 1  # compile_model made the variables first: tf.function traced the step once, not twice
    assert int(model.optimizer.iterations) == 8

    model.set_weights(initial)  # the next fold's initial weights
    assert compile_for_run(model, ("a",), _opt()) is True
    assert int(model.optimizer.iterations) == 0
    assert all(not np.any(keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables)
    second = _fit(model, data)
    assert model.train_function is step and len(traces) == traced  # not traced again

    fresh = _model()  # the same run on a freshly compiled model from the same weights
    fresh.set_weights(initial)
    compile_for_run(fresh, ("a",), _opt())
    third = _fit(fresh, data)
    np.testing.assert_allclose(second, first, rtol=1e-4)
    np.testing.assert_allclose(second, third, rtol=1e-4)
    assert second[-1] < second[0]  # and it trained


def test_other_schedule_or_trainable_variables_compile_afresh():
    data = tiny_data(16)
    model = _model()
    compile_for_run(model, ("a", 8), _opt(steps=8))
    _fit(model, data, epochs=1)
    assert compile_for_run(model, ("a", 16), _opt(steps=16)) is False  # another schedule: a new optimizer
    assert model.train_function is None and int(model.optimizer.iterations) == 0
    _fit(model, data, epochs=1)
    set_trainable(model, 0)  # the head alone: other trainable variables, whatever the key says
    assert compile_for_run(model, ("a", 16), _opt(steps=16)) is False
    assert len(model.optimizer.variables) < len(_model().trainable_variables) * 2
