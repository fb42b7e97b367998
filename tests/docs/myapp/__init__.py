"""Stand-ins for a reader's own application, which the documentation's snippets import.

A snippet in README.md or docs/*.md that needs application code it does not show (an order
class, a mailer, a ready-made builder) imports it from here, e.g.
``from myapp.orders import Order, OrderStatus``. ``tests/test_docs.py`` puts this folder
on the import path of the snippets it type-checks and runs; nothing else uses it.
"""
