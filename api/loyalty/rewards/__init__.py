"""The rewards catalogue, coupons members claim for points, and coupon redemption at the till."""
