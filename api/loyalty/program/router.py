"""Programme settings, earning rules and the tier ladder (marketing staff)."""

from fastapi import status

from api.core.access import PolicyRouter
from api.core.db import SessionDep
from api.loyalty.program import service as program_service
from api.loyalty.program.schemas import (
    ProgramRead,
    ProgramUpdate,
    RuleCreate,
    RuleRead,
    RuleSet,
    RuleUpdate,
    TierRead,
    TierSet,
)
from api.org.dependencies import Marketing

router = PolicyRouter(prefix="/v1", tags=["loyalty"])


@router.get("/loyalty/program", response_model=ProgramRead)
async def get_program(session: SessionDep, _: Marketing) -> ProgramRead:
    """Programme settings: currency, earn rate, point value, pending days, expiry, limits."""
    return ProgramRead(**program_service.program_view(await program_service.get_program(session)))


@router.put("/loyalty/program", response_model=ProgramRead)
async def update_program(body: ProgramUpdate, session: SessionDep, _: Marketing) -> ProgramRead:
    """Change programme settings (fields left out stay as they are)."""
    program = await program_service.update_program(session, data=body)
    return ProgramRead(**program_service.program_view(program))


@router.get("/loyalty/rules", response_model=list[RuleRead])
async def list_rules(session: SessionDep, _: Marketing) -> list[RuleRead]:
    """Every earning rule with its current version."""
    return [RuleRead.model_validate(r) for r in await program_service.list_rules(session)]


@router.put("/loyalty/rules", response_model=list[RuleRead])
async def replace_rules(body: RuleSet, session: SessionDep, _: Marketing) -> list[RuleRead]:
    """Replace the rule set by code: new codes are added, changed rules get a new version,
    rules left out are deactivated."""
    done = await program_service.replace_rules(session, wanted=body.rules)
    return [RuleRead.model_validate(r) for r in done]


@router.post("/loyalty/rules", response_model=RuleRead, status_code=status.HTTP_201_CREATED)
async def create_rule(body: RuleCreate, session: SessionDep, _: Marketing) -> RuleRead:
    """Add an earning rule."""
    return RuleRead.model_validate(await program_service.create_rule(session, data=body))


@router.patch("/loyalty/rules/{rule_id}", response_model=RuleRead)
async def update_rule(
    rule_id: int, body: RuleUpdate, session: SessionDep, _: Marketing
) -> RuleRead:
    """Change an earning rule; its version goes up and the old one is kept."""
    rule = await program_service.get_rule(session, rule_id)
    return RuleRead.model_validate(await program_service.update_rule(session, rule, data=body))


@router.get("/loyalty/tiers", response_model=list[TierRead])
async def list_tiers(session: SessionDep, _: Marketing) -> list[TierRead]:
    """The tier ladder, lowest first."""
    return [TierRead.model_validate(t) for t in await program_service.list_tiers(session)]


@router.put("/loyalty/tiers", response_model=list[TierRead])
async def replace_tiers(body: TierSet, session: SessionDep, _: Marketing) -> list[TierRead]:
    """Set the tier ladder: codes, names, qualifying spend and multipliers, lowest first."""
    return [
        TierRead.model_validate(t) for t in await program_service.replace_tiers(session, data=body)
    ]
