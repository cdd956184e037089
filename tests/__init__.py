"""herald's tests. pytest-xdist's workers inherit COLUMNS=80 from it; rich fixes a console's width to COLUMNS when
the console is made (heraldctl's, at import), so the width the heraldctl fixture asks for would not apply. This
package is imported before any test module or conftest imports heraldctl."""

import os

os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)
