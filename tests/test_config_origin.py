"""Config errors name the file and line that set the value (bench/config_origin.py), before any data."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.config import load_config
from bench.config_origin import Origins, key_lines
from bench.errors import BenchError

runner = CliRunner()


def test_key_lines_reads_headers_keys_dotted_keys_and_skips_strings():
    text = (
        "experiment = 'x'\n"  # 1
        "[train]\n"  # 2
        "epochs = 3  # a comment\n"  # 3
        'note = """\n'  # 4
        "fake = 1\n"  # 5: inside a multi-line string
        '"""\n'  # 6
        "[loss.per_loss.aam]\n"  # 7
        "scale = 8\n"  # 8
        "optim.lr = 0.1\n"  # 9: dotted key inside a table
        "[ 'model' . params ]\n"  # 10
        "channels = 4\n"  # 11
    )
    lines = key_lines(text)
    assert lines["experiment"] == 1 and "x" not in lines and lines["train"] == 2 and lines["train.epochs"] == 3
    assert "train.fake" not in lines and lines["train.note"] == 4
    assert lines["loss.per_loss.aam.scale"] == 8 and lines["loss.per_loss.aam.optim.lr"] == 9
    assert lines["model.params.channels"] == 11


def _write(tmp_path, text):
    p = tmp_path / "my.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[train]\nepochs = 2\npatience = -1\n", 3, "train.patience must be >= 1, got -1"),
        ("[train]\n\npatience = 'x'\n", 3, "config.train.patience: expected an integer"),
        ("[train]\npatiense = 3\n", 2, "unknown parameter 'patiense' (did you mean 'patience'?)"),
        ("[data]\ncrop_seconds = 0.01\n", 2, "data.crop_seconds must be"),
        ("[optim]\nscheduler = 'cosine'\nmax_reductions = 3\n", 3, "optim.max_reductions has no effect without"),
        ("# an array of tables\n[[train]]\nepochs = 3\n", 2, "config.train: expected a table"),
        ("experiment = 'x'\ntrain = 3\n", 2, "config.train: expected a table"),
    ],
)
def test_out_of_range_values_in_a_config_file_name_its_line(tmp_path, text, line, message):
    path = _write(tmp_path, text)
    with pytest.raises(BenchError) as e:
        load_config(preset="demo", file=path)
    assert e.value.path == str(path) and e.value.line == line
    assert message in e.value.message
    assert str(e.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [("[[optim.per_loss.aam]]\nlr = 0.1\n", "config.optim.per_loss.aam: expected a table of optim settings"),
     ("[[loss.per_loss.aam]]\nscale = 4\n", "config.loss.per_loss.aam: expected a table of loss parameters")],
)  # fmt: skip
def test_a_per_loss_rule_that_is_not_a_table_is_worded_like_any_other_section(tmp_path, text, message):
    path = _write(tmp_path, text)
    tune = ["tune", "--preset", "demo", "-c", str(path), "--loss", "aam", "--param", "margin=0.1:0.4", "--trials", "1",
            "--study", "s", "--out", str(tmp_path / "studies")]  # fmt: skip
    for args in (["run", "--preset", "demo", "-c", str(path), "--losses", "aam", "--print-config"], tune):
        result = CliRunner().invoke(app, args)  # bench tune raised AttributeError / TypeError here
        assert result.exit_code != 0 and (result.exception is None or isinstance(result.exception, SystemExit))
        assert "Traceback" not in result.output
        assert f"{path}:1: {message}" in " ".join(result.output.split()), args[0]
    assert not (tmp_path / "studies").exists()


def test_a_value_typed_with_set_is_named_by_its_key_not_by_a_file(tmp_path):
    path = _write(tmp_path, "[train]\npatience = 2\n")
    with pytest.raises(BenchError) as e:
        load_config(preset="demo", file=path, overrides=["train.patience=-4"])
    assert e.value.path is None and e.value.message == "train.patience must be >= 1, got -4"


def test_a_preset_value_made_inert_by_a_user_setting_is_not_refused(tmp_path):
    # the demo preset sets optim.max_reductions for its plateau schedule; another schedule must stay usable
    cfg = load_config(preset="demo", overrides=["optim.scheduler=cosine"])
    assert cfg.optim.scheduler == "cosine"
    with pytest.raises(BenchError, match="optim.momentum has no effect without optim.optimizer = 'sgd'"):
        load_config(preset="demo", overrides=["optim.momentum=0.5"])
    assert load_config(overrides=["optim.momentum=0.5"]).optim.momentum == 0.5  # the default optimiser is sgd


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[loss.per_loss.aam]\nscale = 8\nmargin = -1\n", 3, "aam: margin must be in [0, pi/2)"),
        ("[loss]\nparams = {scale = -3}\n", 2, "scale must be > 0"),
        ("[optim.per_loss.aam]\n\nlr = -0.1\n", 3, "optim.per_loss.aam.lr must be > 0"),
        ("[optim.per_loss.aamsupcn]\nlr = 0.1\n", 1, "unknown loss 'aamsupcn' (did you mean 'aamsupcon'?)"),
    ],
)
def test_loss_and_per_loss_errors_of_bench_run_name_the_file_line(tmp_path, text, line, message):
    path = _write(tmp_path, text)
    res = runner.invoke(app, ["run", "-c", str(path), "--losses", "aam", "--print-config"])
    assert res.exit_code == 2, res.output
    assert f"{path}:{line}: " in res.output and message in res.output
    res = runner.invoke(app, ["run", "-c", str(path), "--losses", "aam",
                              "--out", str(tmp_path / "runs")])  # fmt: skip
    assert res.exit_code == 2 and f"{path}:{line}: " in res.output and not (tmp_path / "runs").exists()


def test_locate_leaves_errors_it_cannot_place_unchanged():
    origins = Origins()
    err = BenchError("something without a key")
    assert origins.locate(err) is err
    located = BenchError("already placed", path="a.toml", line=3)
    assert origins.locate(located) is located


def test_print_config_refuses_a_repeated_loss(tmp_path):
    res = runner.invoke(app, ["run", "--preset", "demo", "--losses", "aam,aam", "--print-config"])
    assert res.exit_code == 2 and "--losses names aam more than once" in res.output
    assert res.output.count("[loss]") == 0


def test_bench_tune_names_the_line_of_a_bad_loss_parameter_too(tmp_path):
    path = _write(tmp_path, "[loss.per_loss.aam]\n# tuned\nmargin = -1\n")
    res = runner.invoke(app, ["tune", "-c", str(path), "--loss", "aam", "--param", "scale=4:8", "--out", str(tmp_path)])
    assert res.exit_code == 2 and f"{path}:3: aam: margin must be in [0, pi/2)" in res.output
    assert not (tmp_path / "tune").exists()


def test_key_lines_is_not_fooled_by_strings_arrays_or_unicode_breaks():
    text = (
        "experiment = '''x \"\"\" y'''\n"  # 1: a literal string holding a triple quote
        '# a comment with """ in it\n'  # 2
        "[data]\n"  # 3
        "view_types = [\n"  # 4
        '  ["a"],\n'  # 5: an array line, not a table header
        "]\n"  # 6
        "caf\u00e9 = 1 # \u2028 not a line break in TOML\n"  # 7: (not a bare key: ignored)
        'root = "x#y" # comment\r\n'  # 8: CRLF, '#' inside a string
        "[train]\n"  # 9
        "patience = 2\n"  # 10
    )
    lines = key_lines(text)
    assert lines["experiment"] == 1 and lines["data.view_types"] == 4 and "a" not in lines
    assert lines["data.root"] == 8 and lines["train"] == 9 and lines["train.patience"] == 10


@pytest.mark.parametrize(
    ("text", "args", "where"),
    [
        # an inline table in the user's file beats the preset's own line for the same key
        ("[loss]\nparams = {scale = -3}\n", ["--losses", "am"], ":2: am: scale must be > 0"),
        ("# x\n\n[optim.per_loss]\naam = {lr = -1}\n", ["--losses", "aam"], ":4: optim.per_loss.aam.lr must be > 0"),
        ("# c\n[loss.per_loss.aam]\n\nscal = 3\n", ["--losses", "aam"], ":4: loss 'aam': unknown parameter 'scal'"),
        ("[model.params]\nchanels = 3\n", [], ":2: backbone 'tiny': unknown parameter 'chanels'"),
        ("[model.params]\n\nchannels = -3\n", [], ":3: ecapa.channels must be >= 1"),
        ("[optim.per_loss.aam]\n\nlrr = 0.1\n", ["--losses", "aam"], ":3: optim.per_loss.aam: unknown key 'lrr'"),
        ("[optim.per_loss.aam]\nmax_reductions = 3\nmomentum = 0.5\n", ["--losses", "aam"],
         ":3: optim.per_loss.aam: optim.momentum has no effect without optim.optimizer = 'sgd'"),
    ],
)  # fmt: skip
def test_a_user_file_is_named_over_the_preset(tmp_path, text, args, where):
    path = _write(tmp_path, text)
    res = runner.invoke(app, ["run", "--preset", "demo", "-c", str(path), *args, "--print-config"])
    assert res.exit_code == 2 and f"{path}{where}" in res.output, res.output
    assert "[loss]" not in res.output  # nothing printed before the refusal


def test_set_values_are_named_by_their_key_even_inside_a_table_or_a_per_loss_rule():
    cases = [
        (["--losses", "am", "--set", "loss.params={scale=-3}"], "--set loss.params.scale: am: scale must be > 0"),
        (["--losses", "aam", "--set", "loss.per_loss.aam.scal=3"], "--set loss.per_loss.aam.scal: loss 'aam'"),
        (["--losses", "aam", "--set", "optim.min_lr=0.004"], "--set optim.min_lr: optim.per_loss.aam: optim.min_lr"),
    ]
    for args, message in cases:
        res = runner.invoke(app, ["run", "--preset", "demo", *args, "--print-config"])
        assert res.exit_code == 2 and message in res.output and "presets" not in res.output, res.output


def test_only_the_keys_an_inline_table_holds_count_as_set_and_printed_configs_read_back(tmp_path):
    path = _write(tmp_path, 'optim = {scheduler = "cosine"}\n')  # step_size, gamma, ... are not the user's
    assert load_config(preset="demo", file=path).optim.scheduler == "cosine"
    for preset in ("", "demo", "reference"):
        printed = runner.invoke(app, ["run", *(["--preset", preset] if preset else []), "--print-config"])
        back = _write(tmp_path, printed.output)
        res = runner.invoke(app, ["run", "-c", str(back), "--print-config"])
        assert res.exit_code == 0 and "[optim]" in res.output, res.output


def test_a_searched_key_the_recipe_ignores_is_refused():
    from bench.tune.space import parse_param

    base = load_config(preset="demo")
    with pytest.raises(BenchError, match="optim.momentum has no effect without optim.optimizer = 'sgd'"):
        parse_param("optim.momentum=0.5:0.99", "aam", base=base)


def test_a_table_given_with_set_merges_into_the_presets_table_like_a_config_file():
    """`--set 'optim={lr=0.01}'` changes the lr and keeps the preset's other optim settings, as a
    `[optim]` table in a -c file does; it once replaced the whole table (the plateau schedule fell
    back to the default scheduler)."""
    preset = load_config(preset="demo")
    via_set = load_config(preset="demo", overrides=["optim={lr=0.01}"])
    assert via_set.optim.lr == 0.01
    assert via_set.optim.scheduler == preset.optim.scheduler == "plateau"
    assert via_set.optim.max_reductions == preset.optim.max_reductions
    # the typed lr replaces the per-loss lrs, as --set optim.lr does; nothing else of them is lost
    assert via_set.optim.per_loss == {
        n: {k: v for k, v in t.items() if k != "lr"} for n, t in preset.optim.per_loss.items()
    }
    nested = load_config(preset="demo", overrides=["loss.per_loss={aam={margin=0.2}}"])
    assert nested.loss.per_loss["aam"] == {**preset.loss.per_loss["aam"], "margin": 0.2}
    assert nested.loss.per_loss["aamsupcon"] == preset.loss.per_loss["aamsupcon"]


def test_a_shared_optim_value_typed_as_a_set_table_beats_the_per_loss_value_like_the_dotted_form():
    """`--set optim.lr=0.01` beats the preset's [optim.per_loss.aam] lr; `--set 'optim={lr=0.01}'` said
    the same and silently did nothing for aam (a new user's check)."""
    from bench.per_loss import optim_for

    dotted = optim_for(load_config(preset="demo", overrides=["optim.lr=0.01"]), "aam")
    table = optim_for(load_config(preset="demo", overrides=["optim={lr=0.01}"]), "aam")
    assert dotted.optim.lr == table.optim.lr == 0.01
    assert optim_for(load_config(preset="demo"), "aam").optim.lr != 0.01


@pytest.mark.parametrize(
    ("value", "words"),
    [("optim={lr=0.01", "not a valid TOML inline table (Unclosed inline table)"),
     ("data.view_types=[noise", "not a valid TOML array"),
     ("optim={lr=}", "not a valid TOML inline table")],
)  # fmt: skip
def test_a_set_value_that_opens_a_table_or_array_but_does_not_parse_says_so(value, words):
    """Read as a plain string, '{lr=0.01' failed later as "expected a table, got '{lr=0.01'", which
    hid that the value did not parse; a bare word is still taken as a string."""
    with pytest.raises(BenchError, match=r"--set " + value.replace("[", r"\[").replace("{", r"\{")) as err:
        load_config(preset="demo", overrides=[value])
    assert words in str(err.value)
    result = CliRunner().invoke(app, ["run", "--preset", "demo", "--set", value, "--print-config"])
    assert result.exit_code != 0 and words in result.output and "Traceback" not in result.output
    assert load_config(preset="demo", overrides=["loss.name=aam"]).loss.name == "aam"


def test_a_string_setting_keeps_a_value_that_starts_like_a_table_or_array():
    """Paths may begin with '[' or '{'; only settings that are not strings get the parse error."""
    cfg = load_config(preset="demo", overrides=["data.trials=[dev]trials.txt", "data.root={x}/corpus"])
    assert cfg.data.trials == "[dev]trials.txt" and cfg.data.root == "{x}/corpus"
