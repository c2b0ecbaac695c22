from __future__ import annotations

from ..helpers import FRAMEWORK_DOCS

DOCS = FRAMEWORK_DOCS
