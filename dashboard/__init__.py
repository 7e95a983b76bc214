"""RetailPulse executive dashboard (Streamlit) over the published serving copy.

Start it with ``make dashboard`` (127.0.0.1:8501, headless, no usage statistics).
"""
