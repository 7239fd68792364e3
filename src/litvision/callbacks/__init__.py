"""Lightning callbacks behind the TensorBoard dashboards and the PNG files of a run.

Each is configured by a YAML in ``conf/callbacks/`` and listed in ``conf/callbacks/default.yaml``.
Nothing is imported here on purpose: ``scripts/plot.py`` uses :mod:`litvision.support.render`
without paying for importing torch and Lightning.
"""
