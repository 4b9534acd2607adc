"""One Powertools Router per feature; app.py includes them all into the one resolver."""
