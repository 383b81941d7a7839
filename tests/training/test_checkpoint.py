"""Checkpoints: bit-identical resume, atomic writes, corrupt and mismatched files."""

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import genvi as gv
from genvi.training import CheckpointError, load_checkpoint, save_checkpoint
from genvi.training import _checkpoint as checkpoint_module
from genvi.training._fit import ResumeWarning


@gv.gen
def guide(phi):
    gv.normal(phi["loc"], jnp.exp(phi["log_scale"])) @ "z"


@gv.expectation
def objective(key, phi, batch):
    """A minibatch ELBO-like objective: random choices and random batches both matter."""
    tr = guide.simulate(key, phi)
    z = tr.choices["z"]
    return jnp.mean(jax.scipy.stats.norm.logpdf(batch, z[0] + phi["w"] @ z, 1.0)) - tr.score


PHI = {"loc": jnp.zeros(3), "log_scale": jnp.zeros(3), "w": jnp.full(3, 0.1)}
DATA = np.random.default_rng(1).normal(2.0, 1.0, size=23).astype(np.float32)
KW = dict(key=jax.random.key(5), optimizer=optax.adam(0.03), data=DATA, batch_size=4, chunk=4)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _assert_bit_identical(a, b):
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def test_resume_is_bit_identical(tmp_path):
    path = tmp_path / "ckpt.npz"
    full = gv.fit(objective, PHI, steps=14, **KW)
    first = gv.fit(objective, PHI, steps=7, checkpoint=path, **KW)
    assert first.step == 7 and path.exists()
    rest = gv.fit(objective, PHI, steps=14, resume=path, **KW)
    assert rest.step == 14
    _assert_bit_identical(full.params, rest.params)
    _assert_bit_identical(full.opt_state, rest.opt_state)
    assert np.array_equal(jax.random.key_data(full.key), jax.random.key_data(rest.key))
    # the history travels with the checkpoint
    np.testing.assert_array_equal(full.history.objective, rest.history.objective)
    np.testing.assert_array_equal(full.history.grad_norm, rest.history.grad_norm)
    assert not np.array_equal(first.params["loc"], full.params["loc"])


def test_checkpoints_every_n_steps_and_at_the_end(tmp_path, monkeypatch):
    written = []
    real = checkpoint_module.save_checkpoint

    def spy(path, state, **kw):
        written.append(int(state.step))
        real(path, state, **kw)

    monkeypatch.setattr("genvi.training._loop.save_checkpoint", spy)
    path = tmp_path / "c.npz"
    result = gv.fit(objective, PHI, steps=10, checkpoint=path, checkpoint_every=4, **KW)
    assert written == [4, 8, 10]
    ckpt = load_checkpoint(path, PHI)
    assert int(ckpt.state.step) == 10 and ckpt.history.steps == 10
    _assert_bit_identical(ckpt.state.params, result.params)
    # resuming from the step-10 checkpoint to 10 steps does nothing
    again = gv.fit(objective, PHI, steps=10, resume=path, **KW)
    _assert_bit_identical(again.params, result.params)


def test_a_crash_while_writing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    state = gv.training.init(PHI, optax.adam(0.1), jax.random.key(0))
    save_checkpoint(path, state)
    before = path.read_bytes()

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip archive")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(checkpoint_module.np, "savez", crash)
    moved = state._replace(step=jnp.int32(5))
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(path, moved)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path / "new.npz", moved)
    assert path.read_bytes() == before  # untouched
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]  # no temporary file, no partial file
    monkeypatch.undo()
    assert int(load_checkpoint(path, PHI).state.step) == 0


def test_corrupt_or_truncated_checkpoints_raise(tmp_path):
    path = tmp_path / "c.npz"
    gv.fit(objective, PHI, steps=3, checkpoint=path, **KW)
    raw = path.read_bytes()
    cases = {
        "truncated": raw[: len(raw) // 2],
        "garbage": b"not a checkpoint at all",
        "empty": b"",
    }
    flipped = bytearray(raw)  # a byte of an array member (the zip CRC-32 covers it)
    flipped[raw.index(b"\x93NUMPY") + 10] ^= 0xFF
    cases["flipped"] = bytes(flipped)
    for name, content in cases.items():
        bad = tmp_path / f"{name}.npz"
        bad.write_bytes(content)
        with pytest.raises(CheckpointError, match=rf"{name}\.npz.*(corrupt|truncated)"):
            gv.fit(objective, PHI, steps=6, resume=bad, **KW)
    with pytest.raises(CheckpointError, match="no checkpoint at .*missing.npz"):
        gv.fit(objective, PHI, steps=6, resume=tmp_path / "missing.npz", **KW)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a genvi checkpoint"):
        load_checkpoint(other, PHI)


def test_mismatched_checkpoints_raise_naming_the_difference(tmp_path):
    path = tmp_path / "c.npz"
    gv.fit(objective, PHI, steps=3, checkpoint=path, **KW)
    wider = dict(PHI, w=jnp.full(4, 0.1))
    with pytest.raises(
        CheckpointError, match=r"params\['w'\] is float32\[3\] in the checkpoint but float32\[4\]"
    ):
        load_checkpoint(path, wider)
    extra = dict(PHI, bias=jnp.zeros(()))
    with pytest.raises(CheckpointError, match=r"it lacks params\['bias'\]"):
        gv.fit(objective, extra, steps=6, resume=path, **KW)
    with pytest.raises(CheckpointError, match="opt_state"):
        gv.fit(objective, PHI, steps=6, resume=path, **dict(KW, optimizer=optax.sgd(0.1)))
    with pytest.raises(CheckpointError, match="different batch size"):
        gv.fit(objective, PHI, steps=6, resume=path, **dict(KW, batch_size=5))
    with pytest.raises(CheckpointError, match="different data"):
        gv.fit(objective, PHI, steps=6, resume=path, **dict(KW, data=DATA + 1.0))
    with pytest.raises(CheckpointError, match="different maximize"):
        gv.fit(objective, PHI, steps=6, resume=path, maximize=False, **KW)


def test_save_and_load_round_trip(tmp_path):
    params = {"a": [jnp.arange(3.0), jnp.ones((2, 2), jnp.bfloat16)], "b": jnp.float32(2.5)}
    opt = optax.adam(0.1)
    state = gv.training.init(params, opt, jax.random.key(9))
    save_checkpoint(tmp_path / "r.npz", state, info={"note": "hello"})
    back = load_checkpoint(tmp_path / "r.npz", params, opt.init(params))
    _assert_bit_identical(back.state.params, state.params)
    _assert_bit_identical(back.state.opt_state, state.opt_state)
    assert back.state.params["a"][1].dtype == jnp.bfloat16
    assert back.info == {"note": "hello"} and back.history is None and back.data_key is None
    assert np.array_equal(jax.random.key_data(back.state.key), jax.random.key_data(state.key))


def test_an_interrupted_run_keeps_its_state_and_resumes_exactly(tmp_path):
    # Ctrl-C arriving between chunks (here: raised by a callback after step 8)
    def interrupt(step, params, history):
        if step >= 8:
            raise KeyboardInterrupt

    path = tmp_path / "c.npz"
    with pytest.warns(RuntimeWarning, match="interrupted at step 8"):
        cut = gv.fit(objective, PHI, steps=14, checkpoint=path, callbacks=[interrupt], **KW)
    assert cut.stopped_reason == "interrupted" and cut.step == 8 and cut.history.steps == 8
    assert int(load_checkpoint(path, PHI).state.step) == 8
    rest = gv.fit(objective, PHI, steps=14, resume=path, **KW)
    full = gv.fit(objective, PHI, steps=14, **KW)
    _assert_bit_identical(full.params, rest.params)


def test_every_corruption_raises_checkpoint_error_or_reads_the_same(tmp_path):
    # Random single-byte changes and every truncation, fixed seed: each one must raise
    # CheckpointError, or leave the contents intact (bytes the zip format does not use,
    # such as timestamps). Before, about 1% escaped as NotImplementedError (a damaged
    # compression field) or RuntimeError (a damaged encryption flag).
    opt = optax.adam(0.1)
    state = gv.training.init(PHI, opt, jax.random.key(0))
    path = tmp_path / "c.npz"
    save_checkpoint(path, state, data_key=jax.random.key(1), history=None, info={"a": 1})
    raw = path.read_bytes()

    def contents(ckpt):
        leaves = jax.tree_util.tree_leaves((ckpt.state.params, ckpt.state.opt_state))
        keys = [jax.random.key_data(ckpt.state.key), jax.random.key_data(ckpt.data_key)]
        return [np.asarray(x).tobytes() for x in leaves + keys], int(ckpt.state.step), ckpt.info

    good = contents(load_checkpoint(path, PHI, opt.init(PHI)))
    rng = np.random.default_rng(0)
    cases = []
    for pos in rng.integers(0, len(raw), 700):
        b = bytearray(raw)
        b[pos] = (b[pos] + int(rng.integers(1, 256))) % 256
        cases.append(bytes(b))
    cases += [raw[:n] for n in range(0, len(raw), 17)]
    bad = tmp_path / "bad.npz"
    raised = 0
    for content in cases:
        bad.write_bytes(content)
        try:
            ckpt = load_checkpoint(bad, PHI, opt.init(PHI))
        except CheckpointError:
            raised += 1
            continue
        assert contents(ckpt) == good
    assert raised > 0.7 * len(cases)


def test_writes_use_the_umask_and_clean_up_after_a_killed_write(tmp_path):
    path = tmp_path / "c.npz"
    # what a process killed while writing leaves: its temporary file (the old mkstemp
    # names and the current ones), beside files that are not ours
    strays = ["c.npz.ab_cd9xy.tmp", "c.npz.0123abcd.tmp"]
    others = ["c.npz.notes.txt", "d.npz.0123abcd.tmp", "c.npz"]
    for name in strays + others[:2]:
        (tmp_path / name).write_bytes(b"partial")
    state = gv.training.init(PHI, optax.adam(0.1), jax.random.key(0))
    old = os.umask(0o027)
    try:
        save_checkpoint(path, state)
    finally:
        os.umask(old)
    assert sorted(os.listdir(tmp_path)) == sorted(others)
    assert (path.stat().st_mode & 0o777) == 0o640  # 0o666 less the umask, not 0o600
    assert int(load_checkpoint(path, PHI).state.step) == 0


def test_a_bad_checkpoint_path_fails_before_training(tmp_path, monkeypatch):
    def no_compiling(*args, **kwargs):
        raise AssertionError("fit compiled (and would have trained) before checking the path")

    monkeypatch.setattr("genvi.training._fit.compiled_chunk", no_compiling)
    (tmp_path / "a_file").write_text("x")
    for bad, match in [
        (tmp_path, "is a folder; give the path of a file"),
        (tmp_path / "a_file" / "c.npz", "cannot create the folder"),
    ]:
        with pytest.raises(CheckpointError, match=match):
            gv.fit(objective, PHI, steps=5, checkpoint=bad, **KW)


def test_a_write_that_fails_at_the_end_warns_and_returns_the_result(tmp_path, monkeypatch):
    def failing(path, state, **kw):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr("genvi.training._loop.save_checkpoint", failing)
    with pytest.warns(RuntimeWarning, match="writing the checkpoint .* failed at step 4"):
        result = gv.fit(
            objective, PHI, steps=6, checkpoint=tmp_path / "c.npz", checkpoint_every=4, **KW
        )
    assert result.step == 6 and result.stopped_reason == "steps"
    assert "No space left on device" in result.message
    reference = gv.fit(objective, PHI, steps=6, **KW)
    _assert_bit_identical(reference.params, result.params)


def test_resume_checks_the_settings_and_warns_about_another_key(tmp_path):
    path = tmp_path / "c.npz"
    settings = {"objective": "elbo", "lr": 0.03}
    gv.fit(objective, PHI, steps=4, checkpoint=path, settings=settings, metadata={"n": 1}, **KW)
    info = load_checkpoint(path, PHI).info
    assert info["settings"] == settings and info["metadata"] == {"n": 1}
    # metadata is kept, not checked
    gv.fit(objective, PHI, steps=4, resume=path, settings=settings, metadata={"n": 2}, **KW)
    with pytest.raises(CheckpointError, match=r"settings\['lr'\] = 0.03, not 0.1") as e:
        gv.fit(objective, PHI, steps=8, resume=path, settings=dict(settings, lr=0.1), **KW)
    assert "without resume=" in str(e.value) and "resume=" not in e.value.problem
    with pytest.raises(CheckpointError, match=r"settings\['seed'\] = None, not 3"):
        gv.fit(objective, PHI, steps=8, resume=path, settings=dict(settings, seed=3), **KW)
    with pytest.raises(TypeError, match="settings must be JSON-able"):
        gv.fit(objective, PHI, steps=8, resume=path, settings={"f": len}, **KW)
    with pytest.warns(ResumeWarning, match=r"key data \[0, 5\], but key=\[0, 6\]"):
        other = gv.fit(objective, PHI, steps=8, resume=path, **dict(KW, key=jax.random.key(6)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)  # the run's own key: no warning
        same = gv.fit(objective, PHI, steps=8, resume=path, **KW)
    _assert_bit_identical(other.params, same.params)  # the checkpoint's keys were used
