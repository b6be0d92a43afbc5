"""The aftersales service: after-sales cases, their deadlines, arbitration and compensation."""
