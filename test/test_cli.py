# Copyright 2026 celegans_autofocus maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""The CLI dispatcher: help lists commands, --config supplies defaults, unknown keys are named."""
import subprocess
import sys
from pathlib import Path

import pytest

from celegans_autofocus import cli


def test_help_lists_available_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "synth" in out and "label" in out


def test_help_does_not_import_torch_or_rclpy():
    code = ("import sys; from celegans_autofocus import cli; cli.build_parser(); "
            "bad = [m for m in ('torch', 'rclpy') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_config_unknown_key_is_named(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("no_such_option: 3\n")
    with pytest.raises(SystemExit) as exc:
        cli.main(["label", str(tmp_path), "--config", str(cfg)])
    assert exc.value.code == 2
    assert "no_such_option" in capsys.readouterr().err


def test_config_base_chain_gives_the_base_keys_and_the_file_its_own(tmp_path):
    """``base`` names a file relative to the config's folder; the chain resolves in order and the nearer file wins."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "root.yaml").write_text("measure: brenner\nagree_steps: 4\n")
    (tmp_path / "mid.yaml").write_text("base: shared/root.yaml\nagree_steps: 6\n")
    (tmp_path / "leaf.yaml").write_text("base: mid.yaml\nmeasure: vollath_f5\n")
    assert cli.read_config(tmp_path / "leaf.yaml") == {"measure": "vollath_f5", "agree_steps": 6}
    parser, subparsers = cli.build_parser()
    cli._load_config(subparsers["label"], tmp_path / "mid.yaml")
    args = parser.parse_args(["label", str(tmp_path), "--agree-steps", "9"])
    assert (args.measure, args.agree_steps) == ("brenner", 9.0)  # from the base; the command line wins


@pytest.mark.parametrize("files, message", [
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"}, "a.yaml)"),  # the whole chain, back to a.yaml
    ({"a.yaml": "base: missing.yaml\n"}, "cannot read config"),
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "- a list\n"}, "must be a mapping"),
    ({"a.yaml": "base: b.yaml\n", "b.yaml": "no_such_option: 1\n"}, "unknown option 'no_such_option'"),
    ({"a.yaml": "base: [b.yaml]\n"}, "base must name a YAML file"),
])
def test_a_bad_base_chain_is_refused_by_name(tmp_path, capsys, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(SystemExit) as exc:
        cli.main(["label", str(tmp_path), "--config", str(tmp_path / "a.yaml")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_the_simulator_commands_render_the_simulators_look_unless_told(tmp_path):
    """`synth`, `bench`, the stack player and config/sim.yaml share one default look, core.optics.SIMULATOR_LOOK."""
    from celegans_autofocus.core.optics import SIMULATOR_LOOK
    from celegans_autofocus.nodes.common import params_from_file
    from celegans_autofocus.nodes.stack_player_node import PARAMS

    parser, _ = cli.build_parser()
    assert parser.parse_args(["synth", str(tmp_path)]).look == SIMULATOR_LOOK
    assert parser.parse_args(["bench"]).look == SIMULATOR_LOOK
    assert parser.parse_args(["bench", "--look", "default"]).look == "default"
    assert next(p.default for p in PARAMS if p.name == "look") == SIMULATOR_LOOK
    sim_yaml = Path(__file__).resolve().parents[1] / "config" / "sim.yaml"
    assert params_from_file(sim_yaml, "stack_player_node")["look"] == SIMULATOR_LOOK


@pytest.mark.parametrize("command, text, message", [
    (["crop", "DS", "--fov", "100"], 'overwrite: "no"\n', "overwrite: expected true or false, got 'no'"),
    (["train", "DS"], 'resume: "false"\n', "resume: expected true or false, got 'false'"),
    (["label", "DS"], "workers: 1.5\n", "workers: expected int, got 1.5"),
    (["label", "DS"], "workers: true\n", "workers: expected int, got True"),
    (["label", "DS"], "plots: 5\n", "plots: expected Path, got 5"),
    (["label", "DS"], "agree_steps: [1, 2]\n", "agree_steps: expected one value, got the list [1, 2]"),
    (["label", "DS"], "agree_steps: x\n", "agree_steps: expected float, got 'x'"),
    (["synth", "DS"], "look: nope\n", "look: 'nope' is not one of"),
    (["synth", "DS"], "plates: null\n", "plates: expected int, got None"),
    (["bench"], "kinds: [start, nope]\n", "kinds: 'nope' is not one of"),
    (["bench"], "kinds: []\n", "kinds: expected at least one value"),
    (["train", "DS"], "synthetic_fov_px: [500, {a: 1}]\n", "synthetic_fov_px: expected int, got {'a': 1}"),
    (["sim"], "switch: [[10, 50, 3]]\n", "switch: expected a list of 2 values"),
    (["crop", "DS"], "fov: []\n", "fov: expected at least one value"),
])
def test_a_config_value_the_option_would_refuse_is_named_and_nothing_runs(tmp_path, capsys, command, text, message):
    """A config value goes through its option's checks: flags take true/false only, typed options their type."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    argv = [str(tmp_path / "ds") if a == "DS" else a for a in command]
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--config", str(cfg)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"config {cfg}: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "ds").exists()


def test_config_values_are_given_as_the_command_line_gives_them(tmp_path):
    """Numbers through their type, a lone value for an option of several as one, paths as paths, nulls kept."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: '3'\nlr: 1e-3\nsynthetic_fov_px: 750\nsynthetic_look: [default, real_adult]\n"
                   "crops: false\nout: runs/x\n")
    parser, subparsers = cli.build_parser()
    cli._load_config(subparsers["train"], cfg)
    args = parser.parse_args(["train"])
    assert (args.epochs, args.lr, args.synthetic_fov_px, args.synthetic_look) == (3, 0.001, [750],
                                                                                  ["default", "real_adult"])
    assert args.crops is False and Path(args.out) == Path("runs/x")
    cfg.write_text("switch: [10, 50]\n")
    cli._load_config(subparsers["sim"], cfg)
    assert parser.parse_args(["sim"]).switch == [[10.0, 50.0]]  # one use of --switch T_S JUMP_STEPS
    cfg.write_text("switch: []\n")
    cli._load_config(subparsers["sim"], cfg)
    assert parser.parse_args(["sim"]).switch == []  # no switch: clears the parameter file's
    cfg.write_text("worms: null\nwidth: '648'\n")
    cli._load_config(subparsers["synth"], cfg)
    args = parser.parse_args(["synth", str(tmp_path)])
    assert (args.worms, args.width) == (None, 648)  # null leaves an option whose default is None unset


def test_a_required_option_in_the_config_counts_and_the_command_line_still_wins(tmp_path, monkeypatch):
    """`crop --config` with ``fov`` is not refused for a missing --fov; --fov on the command line replaces it."""
    from celegans_autofocus.commands import crop

    seen = []
    monkeypatch.setattr(crop, "run", lambda args: seen.append(args.fov) or 0)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("fov: 500\n")
    assert cli.main(["crop", str(tmp_path), "--config", str(cfg)]) == 0
    assert cli.main(["crop", str(tmp_path), "--config", str(cfg), "--fov", "250"]) == 0
    assert seen == [[500], [250]]
    with pytest.raises(SystemExit) as exc:  # without the config, --fov is required again
        cli.main(["crop", str(tmp_path)])
    assert exc.value.code == 2


def test_a_binary_config_is_named(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(SystemExit) as exc:
        cli.main(["label", str(tmp_path), "--config", str(cfg)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"cannot read config {cfg}" in err and "Traceback" not in err


@pytest.mark.parametrize("sizes, message", [
    (["--width", "0"], "--width must give a frame of 4x4 to 2592x1944 px (the camera's full frame), got 0x0"),
    (["--width", "-5"], "--width must give a frame of 4x4 to 2592x1944 px"),
    (["--width", "100000"], "--width must give a frame of 4x4 to 2592x1944 px (the camera's full frame), got 100000x"),
    (["--height", "0"], "--height must give a frame of 4x4"),
    (["--height", "3000"], "--height must give a frame of 4x4 to 2592x1944 px"),
    (["--width", "100", "--height", "100"], "--width and --height must keep the full frame's aspect"),
])
def test_synth_refuses_a_frame_size_by_its_option_and_writes_nothing(tmp_path, capsys, sizes, message):
    out = tmp_path / "out"
    assert cli.main(["synth", str(out), "--plates", "1", "--stacks-per-plate", "1", "--range-steps", "0", *sizes]) == 2
    err = capsys.readouterr().err
    assert f"synth: {message}" in err and "Traceback" not in err
    assert not out.exists()


def test_synth_frame_size_follows_the_full_frames_aspect():
    from celegans_autofocus.commands.synth import frame_wh_px

    assert frame_wh_px(None, None, (2592, 1944)) == (2592, 1944)
    assert frame_wh_px(640, None, (2592, 1944)) == (640, 480)
    assert frame_wh_px(None, 97, (2592, 1944)) == (129, 97)
    assert frame_wh_px(648, 486, (2592, 1944)) == (648, 486)


def test_help_still_shows_a_required_option_as_required(capsys):
    """The first parse lets a config give a required option; `--help` still shows --fov without brackets."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["crop", "--help"])
    assert exc.value.code == 0
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert " --fov PX" in usage and "[--fov PX]" not in usage
