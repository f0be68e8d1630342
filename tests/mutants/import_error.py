"""A submission that fails at import: every test loses its points, each saying why; the results file is complete."""

SOURCE = '''"""A processor that cannot even be imported."""
import batchlab_module_that_does_not_exist  # noqa: F401
'''
LOSES = "all"
MAY_LOSE: set[str] = set()
SCENARIO_CHECKS: set[str] = set()
MESSAGE = r"failed to import: ModuleNotFoundError"
