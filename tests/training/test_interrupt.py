"""Ctrl-C during gv.fit: a flag, checked between chunks; the state is kept and written,
and the previous SIGINT handler is back afterwards. (The ``genvi`` command's policy is
tested by running the command: tests/cli/test_interrupt.py.)"""

import os
import signal
import threading

import jax
import jax.numpy as jnp
import optax
import pytest

import genvi as gv
from genvi.training import _interrupt, load_checkpoint


def _objective(key, params):
    return -jnp.sum((params["w"] - jax.random.normal(key, (2,))) ** 2)


KW = dict(key=jax.random.key(0), optimizer=optax.adam(0.1), chunk=4)
W0 = {"w": jnp.zeros(2)}


@pytest.fixture
def default_sigint():
    """Python's own Ctrl-C handler (a test runner's worker may have set another)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _press(times=1):
    for _ in range(times):
        os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_while_training_stops_after_the_chunk(tmp_path, default_sigint, capsys):
    seen = []

    def cb(step, params, history):
        seen.append(signal.getsignal(signal.SIGINT))
        if step == 8:
            _press()

    path = tmp_path / "c.npz"
    with pytest.warns(RuntimeWarning, match="interrupted at step 8; .* written to"):
        result = gv.fit(_objective, W0, steps=40, checkpoint=path, callbacks=[cb], **KW)
    assert result.stopped_reason == "interrupted" and result.step == 8
    assert int(load_checkpoint(path, W0).state.step) == 8
    assert "stopping after the current chunk" in capsys.readouterr().err
    assert all(h is not signal.default_int_handler for h in seen)  # ours, during the run
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    rest = gv.fit(_objective, W0, steps=12, resume=path, **KW)
    full = gv.fit(_objective, W0, steps=12, **KW)
    assert jnp.array_equal(rest.params["w"], full.params["w"])


def test_ctrl_c_while_compiling_stops_once_compiled(tmp_path, default_sigint, monkeypatch):
    from genvi.training import _fit

    real = _fit.compiled_chunk

    def pressed_while_compiling(*args):
        _press()  # the handler runs at once: it must not raise inside the compilation
        return real(*args)

    monkeypatch.setattr(_fit, "compiled_chunk", pressed_while_compiling)
    path = tmp_path / "c.npz"
    with pytest.warns(RuntimeWarning, match="interrupted at step 0"):
        result = gv.fit(_objective, W0, steps=40, checkpoint=path, **KW)
    assert result.stopped_reason == "interrupted" and result.step == 0
    assert result.history.steps == 0 and not path.exists()  # nothing new to keep
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_raises_at_once_and_the_state_is_kept(default_sigint):
    def cb(step, params, history):
        if step == 4:
            _press(2)

    with pytest.warns(RuntimeWarning, match="interrupted at step 4"):
        result = gv.fit(_objective, W0, steps=40, callbacks=[cb], **KW)
    assert result.stopped_reason == "interrupted" and result.step == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_other_handlers_and_other_threads_are_left_alone(default_sigint):
    def mine(signum, frame):
        pass

    seen = []

    def cb(step, params, history):
        seen.append(signal.getsignal(signal.SIGINT))

    signal.signal(signal.SIGINT, mine)
    gv.fit(_objective, W0, steps=4, callbacks=[cb], **KW)
    assert seen == [mine] and signal.getsignal(signal.SIGINT) is mine
    signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=lambda: gv.fit(_objective, W0, steps=4, callbacks=[cb], **KW))
    thread.start()
    thread.join()
    assert seen[-1] is signal.default_int_handler and _interrupt.active() is None
