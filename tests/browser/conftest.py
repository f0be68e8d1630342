"""Shared by the real-browser tests: the environment Debian's Chromium is started with."""

from __future__ import annotations

import os
from pathlib import Path
from xml.sax.saxutils import escape


def chromium_env(folder: Path) -> dict[str, str]:
    """The test's environment plus a fontconfig file that adds the kit's bundled CJK font (Noto Sans CJK SC, from
    the ``mpl-font`` dependency) to the system fonts, so the screenshots show the pages' Chinese labels on a
    machine without a CJK system font (CI's), as teachers' and students' machines do, instead of boxes."""
    from batchlab.teach.report.style import bundled_cjk_fonts

    dirs = sorted({str(f.parent) for f in bundled_cjk_fonts()})
    conf = folder / "fonts.conf"
    conf.write_text('<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n'
                    '  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>\n'
                    + "".join(f"  <dir>{escape(d)}</dir>\n" for d in dirs)
                    + f"  <cachedir>{escape(str(folder / 'fontconfig-cache'))}</cachedir>\n</fontconfig>\n",
                    encoding="utf-8")
    return {**os.environ, "FONTCONFIG_FILE": str(conf)}
