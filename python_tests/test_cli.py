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
