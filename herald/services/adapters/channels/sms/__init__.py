"""The sms channel: one module per provider (twilio, alibaba_sms), each registered under `herald.providers`."""
