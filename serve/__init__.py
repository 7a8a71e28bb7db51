"""Ray Serve application hosting raymap's Gradio UI: map jobs, exploration, job list."""
