from pydantic import BaseModel, Field


class BalanceRead(BaseModel):
    available: int
    pending: int


class IdentifyRequest(BaseModel):
    code: str = Field(
        min_length=1, max_length=512, description="Rotating QR payload, card, phone or plate"
    )


class IdentifyResult(BaseModel):
    member_id: int
    display_name: str
    tier: str | None
    balance: BalanceRead
    can_redeem: bool
    method: str
    till_token: str
    till_token_expires_in: int
