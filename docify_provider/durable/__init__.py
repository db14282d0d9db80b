"""What must survive a failed try, a lost worker or a restarted triggerer, for every backend.

``state.TaskState`` is the task instance's durable store (``task_state_store`` on Airflow 3.3+,
an Airflow Variable before); ``ledger.RunLedger`` is the bought-once record kept in it (intent ->
started with the server's run ids -> bought), read and written by every backend's operators.
Both fail closed: not being able to read or write the record before a run is sent stops the try.
"""
