"""A server started at the default log level says what it is, without third-party chatter."""

from __future__ import annotations

import logging
from pathlib import Path

from qldm.service.embedded import EmbeddedServer
from qldm.service.server import quiet_third_party
from qldm.service.settings import Settings


def test_default_start_up_log_has_no_alembic_lines(tmp_path: Path) -> None:
    level = Settings.model_fields["log_level"].default
    assert level == "info"
    with EmbeddedServer(tmp_path, log_level=level) as server:
        pass
    text = server.log_path.read_text()
    assert "qldm ready" in text  # our own INFO line is there: the level really was info
    assert "alembic" not in text.lower(), text


def test_debug_level_keeps_alembic() -> None:
    quiet_third_party("debug")
    assert logging.getLogger("alembic").getEffectiveLevel() == logging.DEBUG
    quiet_third_party("info")
    assert logging.getLogger("alembic").getEffectiveLevel() == logging.WARNING
