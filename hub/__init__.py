"""Model card rendering and Hugging Face Hub publishing for exported SimCSE models.

    python -m hub card OUTPUT_DIR                      # (re)render OUTPUT_DIR/README.md from the run's own files
    python -m hub push OUTPUT_DIR --repo-id USER/NAME  # create the repo if needed, upload the export in one commit
"""
