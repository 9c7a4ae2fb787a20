# Databricks notebook source
# MAGIC %md
# MAGIC # Batch-score with the champion
# MAGIC Scores the input with `models:/<model_name>@champion` (or the version given) and writes the
# MAGIC input columns plus prediction, model_version and scored_at, atomically. engine=spark scores
# MAGIC with a native Spark expression; engine=pandas scores a small CSV file in the driver.
# MAGIC Rows that break the data contract fail the run, or (bad_rows=quarantine) go to a side output.

# COMMAND ----------

dbutils.widgets.text("input_path", "/Volumes/main/diabetes/data/data_batch_input.csv", "Input")
dbutils.widgets.dropdown("input_format", "csv", ["csv", "parquet", "delta", "table"], "Format")
dbutils.widgets.text("output_path", "/Volumes/main/diabetes/data/predictions/diabetes", "Output")
dbutils.widgets.dropdown("output_format", "parquet", ["parquet", "delta", "csv"], "Output format")
dbutils.widgets.dropdown("engine", "spark", ["spark", "pandas"], "Engine")
dbutils.widgets.text("model_name", "diabetes", "Registered model")
dbutils.widgets.text("model_version", "champion", "Version number or alias")
dbutils.widgets.text("experiment_name", "/Shared/diabetes", "MLflow experiment")
dbutils.widgets.dropdown("registry", "workspace", ["workspace", "unity_catalog"], "Model registry")
dbutils.widgets.dropdown("bad_rows", "fail", ["fail", "quarantine"], "Rows breaking the contract")
dbutils.widgets.text("max_unknown_share", "0.01", "Share of unknown SEX codes tolerated")
dbutils.widgets.text("quarantine_path", "", "Quarantine output (default <output>_quarantine)")

# COMMAND ----------

from diabetes_mlops.steps import batch_score, run_step

run_step(batch_score, dbutils)
