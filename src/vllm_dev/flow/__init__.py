"""One build, from resolved settings to the plan the steps share."""
