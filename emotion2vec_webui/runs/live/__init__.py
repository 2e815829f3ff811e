"""Live takes: audio that arrives as it is spoken, analysed as it comes, saved as a run at the end.

``live_stream`` is one take (intervals, utterances, the run folder); ``stream_options`` and
``stream_audio`` read what a client sends; ``stream_tickets`` open a socket without the API token;
``take_view`` is what a face draws of a take so far.
"""
