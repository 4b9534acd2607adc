"""The flows that tie models, store and upstreams together: accept, dispatch, query."""
