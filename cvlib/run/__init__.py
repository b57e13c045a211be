"""The run layer: executing a study's stage notebooks, reusing earlier results, rendering the reports and
the run's pages."""
