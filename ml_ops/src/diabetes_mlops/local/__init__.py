"""Running the Databricks job specs on this machine: local dbutils, lazy Spark, the runner."""
