"""The HTTP API `milepost api` serves: health, Twilio webhooks, unsubscribe links."""
