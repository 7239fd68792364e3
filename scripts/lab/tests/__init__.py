"""The lab's tests, a package: pytest then puts its root, scripts/lab, on sys.path (so ``import litvision_lab``
works), and its conftest is ``tests.conftest``, which leaves the template's tests/conftest.py the module
``conftest`` its tests import from."""
