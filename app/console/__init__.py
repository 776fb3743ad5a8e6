"""The operator web console (issue 15): server-rendered pages at ``/console`` on the hub's own port.

``routes`` registers the pages and actions (app/plugins.py ROUTE_MODULES), ``session`` turns an admin
token into a session cookie and checks CSRF tokens and roles, ``pages`` and ``actions`` call the
admin service layer (app/admin/queries.py, app/admin/replay.py) and the flow endpoints' checks,
``svg`` draws the charts and flow diagrams, ``i18n`` holds the Chinese and English labels.
Not to be confused with app/admin/console.py: the CLI's terminal tables.
"""
