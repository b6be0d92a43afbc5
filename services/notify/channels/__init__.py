"""The notify service's outbound channels: WeChat subscribe messages (`wechat`, with `fields` fitting their values)
and Tencent Cloud SMS (`sms`, signed by `tc3`). Each is a client of one provider's wire format and owns no state
but an access token; what to send, and what a result means for the customer, is the service's."""
