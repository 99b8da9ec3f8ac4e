"""The training loop, checkpoints (atomic, resumable bit for bit), the char-LM app, the CLI's
train/generate/demo commands with bad input, and the examples at a small size."""

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastrnn import charlm, nn, optim
from fastrnn.cli import main
from fastrnn.train import fit, load_checkpoint, plot_history, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def toy_problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((64, 8, 2)).astype(np.float32)
    y = x.sum(axis=(1, 2)).astype(np.float32) / 4
    model = nn.Sequential(nn.Recurrent("gru", 2, 8, output="last", dropout=0.3, num_layers=2,
                                       seed=seed),
                          nn.Dropout(0.2, seed=seed), nn.Linear(8, 1, seed=seed))

    def batches(epoch):
        perm = np.random.default_rng(epoch).permutation(64)
        return [(x[perm[i:i + 16]], y[perm[i:i + 16], None]) for i in range(0, 64, 16)]

    return model, batches, lambda: [(x[:16], y[:16, None])]


def params_of(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_fit_learns_and_records_history():
    model, batches, val = toy_problem()
    opt = optim.Adam(model, lr=0.02)
    h = fit(model, nn.MSELoss(), opt, batches, val_batches=val, epochs=8, clip_norm=1.0,
            progress=False, log=None)
    assert h.epoch == list(range(1, 9)) and len(h.val_loss) == 8
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]


def test_resume_continues_bit_identically(tmp_path):
    ckpt = str(tmp_path / "run.npz")
    model, batches, val = toy_problem()
    opt = optim.Adam(model, lr=0.02)
    sched = optim.StepLR(opt, 2, 0.5)
    full = fit(model, nn.MSELoss(), opt, batches, val_batches=val, epochs=5, scheduler=sched,
               clip_norm=1.0, progress=False, log=None)
    expected = params_of(model)

    model, batches, val = toy_problem()  # a fresh process would start like this
    opt = optim.Adam(model, lr=0.02)
    sched = optim.StepLR(opt, 2, 0.5)
    fit(model, nn.MSELoss(), opt, batches, val_batches=val, epochs=3, scheduler=sched,
        clip_norm=1.0, checkpoint=ckpt, progress=False, log=None)
    model, batches, val = toy_problem()
    opt = optim.Adam(model, lr=0.02)
    sched = optim.StepLR(opt, 2, 0.5)
    resumed = fit(model, nn.MSELoss(), opt, batches, val_batches=val, epochs=5,
                  scheduler=sched, clip_norm=1.0, checkpoint=ckpt, resume=True,
                  progress=False, log=None)
    for k, v in expected.items():
        np.testing.assert_array_equal(model.state_dict()[k], v, err_msg=k)
    assert resumed.train_loss == full.train_loss and opt.lr == 0.02 * 0.25


def test_checkpoint_is_atomic_and_corruption_is_detected(tmp_path):
    model, _, _ = toy_problem()
    path = str(tmp_path / "m.npz")
    save_checkpoint(path, model, meta={"note": "first"})
    before = Path(path).read_bytes()

    class Exploding(dict):
        def items(self):
            raise RuntimeError("disk full")

    model2, _, _ = toy_problem(1)
    model2.state_dict = lambda: Exploding()
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, model2)
    assert Path(path).read_bytes() == before  # the old checkpoint survives a failed save
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # and no temp file is left
    assert load_checkpoint(path)["meta"] == {"note": "first"}
    Path(path).write_bytes(before[: len(before) // 2])
    with pytest.raises(ValueError, match="not a fastrnn checkpoint: not a readable .npz"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(str(tmp_path / "missing.npz"))


def test_diverging_training_stops_with_a_clear_error():
    model, batches, _ = toy_problem()
    opt = optim.SGD(model, lr=1e6)
    with pytest.raises(FloatingPointError, match="diverged"):
        fit(model, nn.MSELoss(), opt, batches, epochs=5, progress=False, log=None)


def test_history_plot(tmp_path):
    pytest.importorskip("matplotlib")
    model, batches, val = toy_problem()
    h = fit(model, nn.MSELoss(), optim.Adam(model), batches, val_batches=val, epochs=2,
            progress=False, log=None)
    out = tmp_path / "h.png"
    plot_history(h, str(out))
    assert out.read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------ char-LM


def test_charlm_learns_below_unigram_entropy_and_samples(tmp_path):
    text = charlm.default_corpus()[:40000]
    cfg = charlm.Config(vocab=charlm.Vocab.from_text(text).chars, hidden=64, embed=16)
    path = str(tmp_path / "lm.npz")
    model, cfg, history, h1 = charlm.train(text, cfg, epochs=3, seq_len=32, batch_size=16,
                                           checkpoint=path, progress=False, log=None)
    assert history.val_loss[-1] < 0.85 * h1  # well below the no-context bound
    loaded, cfg2 = charlm.load(path)
    assert cfg2 == cfg
    a = charlm.sample(model, cfg, "The ", 50, temperature=0.5, seed=3)
    b = charlm.sample(loaded, cfg2, "The ", 50, temperature=0.5, seed=3)
    assert a == b and len(a) == 50 and set(a) <= set(cfg.vocab)
    greedy_ish = charlm.sample(model, cfg, "The ", 30, temperature=0.01, top_k=1, seed=0)
    assert greedy_ish == charlm.sample(model, cfg, "The ", 30, top_k=1, seed=99)
    with pytest.raises(ValueError, match="temperature"):
        charlm.sample(model, cfg, temperature=0.0)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        charlm.sample(model, cfg, prime="\u2603")


def test_sampling_runs_the_step_path_and_equals_the_whole_sequence_forward():
    """charlm.sample's per-character steps (RNNBase.step) give the characters that the whole
    prefix through the model's forward gives, for a hand-built model that is not stateful,
    with the vocabulary given as a string; the model is put back in training mode."""
    vocab = "abcdefgh \n"
    model = nn.Sequential(nn.Embedding(len(vocab), 5, seed=0),
                          nn.Recurrent("gru", 5, 12, 2, seed=1), nn.Linear(12, len(vocab), seed=2))
    got = charlm.sample(model, vocab, "abc", 25, temperature=0.8, seed=4)
    assert model.training
    rng = np.random.default_rng(4)
    ids = list(charlm.Vocab(vocab).encode("abc"))
    model.eval()
    for _ in range(25):
        z = model(np.array([ids]))[0, -1].astype(np.float64) / 0.8
        cdf = np.cumsum(np.exp(z - z.max()))
        ids.append(int(np.searchsorted(cdf / cdf[-1], rng.random(), side="right")))
    assert got == charlm.Vocab(vocab).decode(ids[3:])
    assert got == charlm.sample(model, charlm.Vocab(vocab), "abc", 25, temperature=0.8, seed=4)
    with pytest.raises(ValueError, match="Embedding, Recurrent"):
        charlm.sample(nn.Sequential(nn.Linear(3, 3)), vocab)
    with pytest.raises(ValueError, match="vocabulary 3 characters"):
        charlm.sample(model, "abc")
    with pytest.raises(TypeError, match="vocab must be"):
        charlm.sample(model, 7)


def test_text_checks():
    with pytest.raises(ValueError, match="empty"):
        charlm.check_text("   ")
    with pytest.raises(ValueError, match="binary"):
        charlm.check_text("abc\x00" * 500)
    with pytest.raises(ValueError, match="too short"):
        charlm.check_text("hello")


# ------------------------------------------------------------------ command line


def test_cli_train_generate_and_errors(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(charlm.default_corpus()[:20000])
    ckpt = tmp_path / "c.npz"
    assert main(["train", "--text", str(text), "--epochs", "1", "--hidden", "16",
                 "--embed", "8", "--checkpoint", str(ckpt), "--no-progress"]) == 0
    assert main(["generate", "--checkpoint", str(ckpt), "--length", "40", "--seed", "1",
                 "--prime", "In "]) == 0
    out = capsys.readouterr().out
    assert "saved" in out and "In " in out
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    binary = tmp_path / "b.bin"
    binary.write_bytes(bytes(range(256)) * 10)
    empty = tmp_path / "e.txt"
    empty.write_text("")
    for argv, message in [
        (["train", "--text", str(tmp_path / "nope.txt")], "cannot read"),
        (["train", "--text", str(binary)], "binary"),
        (["train", "--text", str(empty)], "empty"),
        (["generate", "--checkpoint", str(bad)], "not a fastrnn checkpoint"),
        (["generate", "--checkpoint", str(ckpt), "--prime", "\u2603"], "not in the vocab"),
    ]:
        assert main(argv) == 1, argv
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["generate", "--checkpoint", str(ckpt), "--temperature", "nan"])
    assert exc.value.code == 2
    assert "positive number" in capsys.readouterr().err


def _train_argv(text, ckpt, *extra):
    return ["train", "--text", str(text), "--epochs", "1", "--hidden", "16", "--embed", "8",
            "--checkpoint", str(ckpt), "--no-progress", *extra]


def test_cli_never_destroys_a_file_it_did_not_write(tmp_path, capsys):
    """--checkpoint on the corpus, a rerun without --resume, --resume on another corpus: each
    refused with the flag to use, and the file left byte for byte; --force replaces."""
    corpus = charlm.default_corpus()
    text, other = tmp_path / "t.txt", tmp_path / "o.txt"
    text.write_text(corpus[:20000])
    other.write_text(corpus[20000:40000])
    ckpt = tmp_path / "c.npz"
    before = text.read_bytes()
    assert main(_train_argv(text, text)) == 1
    assert "--force replaces" in capsys.readouterr().err and text.read_bytes() == before
    assert main(_train_argv(text, ckpt)) == 0
    first = ckpt.read_bytes()
    assert main(_train_argv(text, ckpt)) == 1
    assert "--resume continues" in capsys.readouterr().err and ckpt.read_bytes() == first
    assert main(_train_argv(other, ckpt, "--resume")) == 1
    assert "another run (charlm: vocab differ)" in capsys.readouterr().err
    assert ckpt.read_bytes() == first
    assert main(_train_argv(text, ckpt, "--resume", "--seed", "3")) == 1
    assert "seed differ" in capsys.readouterr().err
    assert main(_train_argv(text, ckpt, "--force")) == 0
    assert main(_train_argv(text, tmp_path / "missing" / "c.npz")) == 1
    assert "cannot write" in capsys.readouterr().err
    assert main(["demo", "--minutes", "0.01", "--hidden", "8", "--embed", "4",
                 "--no-progress", "--checkpoint", str(text)]) == 1
    assert "--force replaces" in capsys.readouterr().err and text.read_bytes() == before


def test_fit_refuses_to_replace_and_checks_writability_first(tmp_path):
    from fastrnn.train import fit

    model = nn.Sequential(nn.Linear(2, 1, seed=0))
    batches = [(np.ones((4, 2), np.float32), np.zeros((4, 1), np.float32))]
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True replaces it"):
        fit(model, nn.MSELoss(), optim.SGD(model, lr=0.1), lambda e: batches, epochs=1,
            checkpoint=str(path), progress=False, log=None)
    assert path.read_text() == "mine"
    with pytest.raises(IsADirectoryError):  # found before the first epoch
        fit(model, nn.MSELoss(), optim.SGD(model, lr=0.1), lambda e: 1 / 0, epochs=1,
            checkpoint=str(tmp_path), overwrite=True, progress=False, log=None)


def test_killed_writers_temporaries_are_removed_at_the_next_write(tmp_path):
    from fastrnn.atomic import write_bytes

    target = tmp_path / "c.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".c.npz.{dead}.tmp"
    stale.write_bytes(b"half")
    alive = tmp_path / f".c.npz.{os.getppid()}.tmp"  # a live process's: left alone
    alive.write_bytes(b"busy")
    other = tmp_path / f".d.npz.{dead}.tmp"  # another file's: left alone
    other.write_bytes(b"x")
    write_bytes(str(target), b"new")
    assert target.read_bytes() == b"new" and not stale.exists()
    assert alive.exists() and other.exists()


def test_cli_messages_for_bad_files_and_flags(tmp_path, capsys):
    import json

    text = tmp_path / "t.txt"
    text.write_text(charlm.default_corpus()[:20000])
    random_bytes = tmp_path / "r.bin"
    random_bytes.write_bytes(os.urandom(2000))
    no_info = tmp_path / "a.npz"
    np.savez(no_info, a=np.ones(2))
    not_dict = tmp_path / "b.npz"
    np.savez(not_dict, info=np.array(json.dumps([1])))
    bad_cfg = tmp_path / "d.npz"
    np.savez(bad_cfg, info=np.array(json.dumps({"format": "fastrnn-checkpoint-1", "rngs": [],
                                                "meta": {"charlm": {"vocab": "ab", "x": 1}}})))
    for path, message in [(text, "not a readable .npz archive"),
                          (random_bytes, "not a readable .npz archive"),
                          (no_info, "no 'info' entry"), (not_dict, "format 'list'"),
                          (bad_cfg, "damaged char-LM checkpoint")]:
        assert main(["generate", "--checkpoint", str(path)]) == 1, path
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
    with pytest.raises(SystemExit) as exc:
        main(["train", "--text", str(text), "--seed", "-1"])
    assert exc.value.code == 2 and "argument --seed" in capsys.readouterr().err
    assert main(_train_argv(text, tmp_path / "lr.npz", "--lr", "1e9")) == 1
    assert "diverged or did not learn" in capsys.readouterr().err
    assert main(_train_argv(text, tmp_path / "m.npz", "--hidden", "3000000")) == 1
    assert "not enough memory" in capsys.readouterr().err
    one = tmp_path / "one.txt"
    one.write_text("a" * 3000)
    assert main(_train_argv(one, tmp_path / "one.npz")) == 0
    assert "entropy 0.000" in capsys.readouterr().out
    no_newline = tmp_path / "n.txt"
    no_newline.write_text("abc def " * 1500)
    assert main(_train_argv(no_newline, tmp_path / "n.npz")) == 0
    assert main(["generate", "--checkpoint", str(tmp_path / "n.npz"), "--prime", "",
                 "--length", "10"]) == 0


def test_cli_demo_runs_end_to_end(capsys):
    assert main(["demo", "--minutes", "0.05", "--hidden", "32", "--embed", "8",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "unigram entropy" in out
    for t in ("0.2", "0.5", "1.0", "1.2"):
        assert f"--- temperature {t} ---" in out


# ------------------------------------------------------------------ examples


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_forecast_example_beats_persistence(tmp_path):
    forecast = load_example("forecast")
    result = forecast.run(forecast.multi_sine(1200), epochs=6, log=lambda *_: None)
    assert result["rmse"] < 0.8 * result["persistence_rmse"]
    csv = tmp_path / "s.csv"
    series = forecast.multi_sine(400, seed=2)
    csv.write_text("t,value\n" + "\n".join(f"{i},{v}" for i, v in enumerate(series)))
    np.testing.assert_allclose(forecast.read_column(str(csv), "value"), series, rtol=1e-6)
    with pytest.raises(ValueError, match="no column 'nope'"):
        forecast.read_column(str(csv), "nope")
    assert forecast.main(["--csv", str(csv)]) == 1  # --csv without --column


def test_classify_example_reaches_its_accuracy():
    classify = load_example("classify")
    accuracy = classify.run(n_train=3000, epochs=8, log=lambda *_: None)
    assert accuracy >= classify.TARGET_ACCURACY and not math.isnan(accuracy)


def test_seq2seq_example_quick_mode_reaches_its_bar(tmp_path, capsys):
    """`examples/seq2seq.py --quick`: date normalisation after about 20 s of training, test
    dates never seen in training, exact match over its quick bar; the heat-map is a PNG."""
    seq2seq = load_example("seq2seq")
    train, val, test = seq2seq.make_splits(0)
    dates = [{iso for _, iso in part} for part in (train, val, test)]
    assert not (dates[0] & dates[2]) and not (dates[0] & dates[1])  # split by date
    plot = tmp_path / "attention.png"
    assert seq2seq.main(["--quick", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("test exact match ")[1].split("%")[0]) / 100
    assert accuracy >= seq2seq.QUICK_ACCURACY
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_examples_dir_has_no_stray_outputs():
    assert not any(p.suffix in (".png", ".npz") for p in (ROOT / "examples").iterdir())
    assert os.access(ROOT / "examples" / "forecast.py", os.R_OK)
