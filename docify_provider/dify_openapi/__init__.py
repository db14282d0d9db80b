"""Dify's user-scoped OpenAPI (``/openapi/v1``, an account's bearer token ``dfoa_...``): the wire layer.

No Airflow imports. Built on the shared core (``docify_provider._core``) and on the Service API
backend's models, stream verdict and input planner (``docify_provider.dify``); what differs is
here: two generations of paths (``protocol``), the OpenAPI error body and the bearer rate limit
(``errors``), validation against the app's ``input_schema`` (``schema``), the account, workspace,
app and session models (``models``), the device flow (``device``) and the clients (``client``).
"""
