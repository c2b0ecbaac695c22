from __future__ import annotations

from tests.helpers import FRAMEWORK_DOCS

DOCS = FRAMEWORK_DOCS
