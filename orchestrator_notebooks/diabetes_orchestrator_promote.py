# Databricks notebook source
# MAGIC %md
# MAGIC # Promote the challenger
# MAGIC Moves alias `champion` to the version only when its validation passed; otherwise the
# MAGIC champion stays where it is.

# COMMAND ----------

dbutils.widgets.text("model_name", "diabetes", "Registered model")
dbutils.widgets.text("model_version", "", "Version to promote (required)")
dbutils.widgets.dropdown("registry", "workspace", ["workspace", "unity_catalog"], "Model registry")

# COMMAND ----------

from diabetes_mlops.steps import promote, run_step

run_step(promote, dbutils)
