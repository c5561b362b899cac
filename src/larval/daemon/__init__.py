"""Process composition: the services `larval` runs."""
