# Databricks notebook source
# MAGIC %md
# MAGIC # Batch-score with the champion
# MAGIC Scores the input file with `models:/<model_name>@champion` (or the version given) and writes
# MAGIC the input columns plus prediction, model_version and scored_at, atomically.

# COMMAND ----------

dbutils.widgets.text(
    "input_path", "/Volumes/main/diabetes/data/data_batch_input.csv", "Input (CSV)"
)
dbutils.widgets.text(
    "output_path",
    "/Volumes/main/diabetes/data/predictions/diabetes_predictions.parquet",
    "Output (.parquet or .csv)",
)
dbutils.widgets.text("model_name", "diabetes", "Registered model")
dbutils.widgets.text("model_version", "champion", "Version number or alias")
dbutils.widgets.text("experiment_name", "/Shared/diabetes", "MLflow experiment")
dbutils.widgets.dropdown("registry", "workspace", ["workspace", "unity_catalog"], "Model registry")

# COMMAND ----------

from diabetes_mlops.steps import batch_score, run_step

run_step(batch_score, dbutils)
