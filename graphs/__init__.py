"""LangGraph Studio entry points: graph factories named in `langgraph.json`."""
