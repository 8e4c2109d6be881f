"""Every launcher parses, passes shellcheck, and the template has only documented placeholders."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.launch.common import SCRIPTS, TEMPLATE


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_pass_shellcheck(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert os.access(script, os.X_OK), f"{script} is not executable"
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    result = subprocess.run(["shellcheck", "-x", str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout


def test_template_placeholders_are_the_documented_ones():
    found = set(re.findall(r"__[A-Z_]+__", TEMPLATE.read_text()))
    assert found == {"__NAME__", "__IMAGE__", "__NUM_PROCESSES__", "__GPUS_PER_POD__", "__PORT__", "__TRAIN_ARGS__"}
