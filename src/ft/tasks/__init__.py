"""The training tasks: one module (or package) each, declaring itself as `TASK = Task(...)`
(ft.config.registry) beside its config section, and building its TRL trainer top to bottom
(tasks/sft.py is the model). `task=NAME` picks one; `task=my_pkg.my_module` picks a task of your own.
"""
