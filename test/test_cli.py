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
