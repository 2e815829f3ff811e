"""The user's saved models beside the runs: trained heads and fitted calibrations, one folder each."""
