"""Audio a client names instead of uploading: a server-side path (confined to ``E2V_INPUT_DIRS``) or a URL."""
