# Databricks notebook source
# MAGIC %md
# MAGIC # Promote the challenger
# MAGIC Moves alias `champion` to the version only when its validation passed (and, where the
# MAGIC target requires it, a person approved it); otherwise the champion stays where it is.

# COMMAND ----------

dbutils.widgets.text("model_name", "diabetes", "Registered model")
dbutils.widgets.text("model_version", "", "Version to promote (required)")
dbutils.widgets.dropdown("registry", "workspace", ["workspace", "unity_catalog"], "Model registry")
dbutils.widgets.dropdown("approval", "none", ["required", "none"], "Approval")
dbutils.widgets.text("deploy_target", "", "Deploy target the approval is for")

# COMMAND ----------

from diabetes_mlops.steps import promote, run_step

run_step(promote, dbutils)
