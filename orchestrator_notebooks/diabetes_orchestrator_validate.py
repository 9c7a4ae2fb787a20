# Databricks notebook source
# MAGIC %md
# MAGIC # Validate the challenger
# MAGIC Scores the new version and the current `champion` on the challenger's holdout. Passes when the
# MAGIC new version beats a mean predictor and is no worse than the champion (within the tolerance).
# MAGIC The verdict is tagged on the model version; the promote task reads it.

# COMMAND ----------

dbutils.widgets.text("model_name", "diabetes", "Registered model")
dbutils.widgets.text("model_version", "", "Version to validate (required)")
dbutils.widgets.text("experiment_name", "/Shared/diabetes", "MLflow experiment")
dbutils.widgets.dropdown("registry", "workspace", ["workspace", "unity_catalog"], "Model registry")
dbutils.widgets.text("rmse_tolerance", "0.0", "Allowed relative rmse increase over the champion")
dbutils.widgets.text("min_comparison_rows", "20", "Fewest comparable holdout rows")

# COMMAND ----------

from diabetes_mlops.steps import run_step, validate

run_step(validate, dbutils)
