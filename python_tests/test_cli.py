"""The `mednns-fast` command: its subcommands run and report what they should."""

import pytest

from mednns_fast import cli


def test_info_lists_every_op_with_its_devices(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for op in ("mixed_sum", "multi_depthwise_conv2d", "js_pairwise", "fid_trace_sqrt_pairs"):
        assert op in out
    assert "cpu" in out and "NOT loaded" not in out


def test_data_table_without_building(capsys):
    assert cli.main(["data"]) == 0
    out = capsys.readouterr().out
    assert "brain_tissue" in out and "nuclei_seg" in out


def test_unknown_command_is_an_argparse_error():
    with pytest.raises(SystemExit) as exc:
        cli.main(["fly"])
    assert exc.value.code == 2


SUBCOMMANDS = [["info"], ["data"], ["bench"], ["supernet", "train"], ["zoo", "build"], ["metaspace", "train"],
               ["query"], ["finetune"], ["iac", "search"], ["report"], ["demo"], ["study", "lodo"], ["study", "iac"]]


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*command, "--help"])
    assert exc.value.code == 0
    assert f"usage: mednns-fast {' '.join(command)}" in capsys.readouterr().out


def test_python_dash_m_runs_the_same_command():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "mednns_fast", "--help"], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and "mednns-fast demo" in out.stdout


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    return err[-1]


@pytest.mark.parametrize("argv, expected", [
    (["query", "--task", "no_such_task"], "unknown task 'no_such_task'"),
    (["iac", "search", "--task", "brain_tissue"], "unknown segmentation task(s) ['brain_tissue']"),
    (["zoo", "build", "--tasks", "nuclei_seg"], "unknown classification task(s) ['nuclei_seg']"),
])
def test_names_that_do_not_exist_are_usage_errors(argv, expected, tmp_path, capsys):
    assert cli.main([*argv, "--run-dir", str(tmp_path)]) == 2
    assert expected in _one_line_error(capsys)


@pytest.mark.parametrize("argv, expected", [
    (["zoo", "build", "--set", "zoo.nonsense=1"], "unknown config key 'zoo.nonsense'"),
    (["zoo", "build", "--set", "zoo.calib_size=many"], "config key 'zoo.calib_size' expects int"),
    (["zoo", "build", "--set", "novalue"], "--set expects KEY=VALUE"),
    (["query", "--task", "brain_tissue", "--top-k", "0"], "must be a positive integer"),
    (["bench", "--device", "tpu"], "--device tpu"),
])
def test_bad_arguments_exit_2_with_one_line(argv, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--run-dir", str(tmp_path)])
    assert exc.value.code == 2
    assert expected in _one_line_error(capsys)


def test_missing_config_file_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", "--run-dir", str(tmp_path), "--config", str(tmp_path / "nope.toml")])
    assert exc.value.code == 2 and "nope.toml' does not exist" in _one_line_error(capsys)


@pytest.mark.parametrize("argv, expected", [
    (["finetune", "--task", "brain_tissue"], "run `mednns-fast query --task brain_tissue` first"),
    (["query", "--task", "brain_tissue"], "train one with `mednns-fast metaspace train`"),
    (["metaspace", "train"], "mednns-fast zoo build"),
])
def test_missing_prerequisites_say_which_command_makes_them(argv, expected, tmp_path, capsys):
    assert cli.main([*argv, "--run-dir", str(tmp_path), "--no-progress"]) == 1
    assert expected in _one_line_error(capsys)


def test_config_file_then_set_then_flags(tmp_path, capsys):
    toml = tmp_path / "c.toml"
    toml.write_text('[query]\ntop_k = 3\ntask = "brain_plane"\n[zoo]\nbranching = [1, 1, 2, 2]\n')
    assert cli.main(["query", "--task", "modality", "--config", str(toml), "--set", "query.top_k=4",
                     "--run-dir", str(tmp_path), "--show-config"]) == 0
    import json

    shown = json.loads(capsys.readouterr().out)
    assert shown["query"] == {"task": "modality", "top_k": 4}
    assert shown["zoo"]["branching"] == [1, 1, 2, 2]


def test_progress_bars_only_on_a_terminal(monkeypatch):
    from mednns_fast.cli.parser import progress_bars

    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.setattr("sys.stderr", Stream(True))
    assert progress_bars(False) and not progress_bars(True)
    monkeypatch.setattr("sys.stderr", Stream(False))  # a log file or a pipe: one line per stage instead
    assert not progress_bars(False)


def test_study_lodo_flags_reach_its_settings():
    from mednns_fast.cli.parser import build_parser
    from mednns_fast.cli.study import lodo_settings

    args = build_parser().parse_args(["study", "lodo", "--zoo", "sqlite:///z.db", "--out", "o", "--seeds", "3,4",
                                      "--metaspace-steps", "7"])
    s = lodo_settings(args)
    assert s.seeds == (3, 4) and s.metaspace_steps == 7 and s.images == type(s)().images
