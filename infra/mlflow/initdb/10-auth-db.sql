-- Second database for the basic-auth app's users and permissions (runs once, on an empty volume).
CREATE DATABASE mlflow_auth OWNER mlflow;
