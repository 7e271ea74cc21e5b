"""What people look at: Markdown tables and figures built from core results. No Dagster."""
