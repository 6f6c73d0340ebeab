"""``system.yaml``: what the provider states about the AI system that no ledger can know (intended
purpose, provider, host product, oversight, declaration of conformity, ...). Reports merge it, marked
as the provider's statement; every field left out is shown as a gap for the provider to fill.

``reports/templates/system.yaml`` is the commented fill-in template (``trustai report --init-system``).
"""

from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trustai.core.canonical import sha256_hex
from trustai.errors import TrustaiUserError

# Reuses the policy pack's YAML line map so system.yaml errors name file:line the same way.
from trustai.packs.yaml_lines import dotted, line_map, line_of, read_yaml

MAX_SYSTEM_BYTES = 1 << 20
Text = str | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Provider(_Strict):
    """The provider placing the system on the market (Art. 13, Annex IV 1(a))."""

    name: Text = None
    address: Text = None
    contact: Text = None
    authorised_representative: Text = None


class HostProduct(_Strict):
    """The product the policy is a component of, e.g. the machine it controls (Annex IV 1(f))."""

    name: Text = None
    description: Text = None
    illustrations: list[str] = Field(default_factory=list)


class SignOff(_Strict):
    """A person responsible for validation and test reports (Annex IV 2(g))."""

    name: str
    role: str
    date: str


class SystemDescription(_Strict):
    """The provider's statements, one field per item the frameworks ask for."""

    name: Text = Field(None, description="name of the AI system")
    version: Text = Field(None, description="version of the AI system")
    previous_versions: Text = Field(None, description="relation to earlier versions")
    intended_purpose: Text = Field(None, description="intended purpose")
    provider: Provider = Field(default_factory=Provider, description="provider name, address and contact")
    interactions: Text = Field(
        None, description="interaction with hardware, software and other AI systems (sensors, controllers)"
    )
    software_update_requirements: Text = Field(
        None, description="software and firmware versions and update requirements on the deployed system"
    )
    market_forms: Text = Field(None, description="forms in which the system is placed on the market")
    deployment_hardware: Text = Field(None, description="hardware the system is intended to run on")
    host_product: HostProduct = Field(
        default_factory=HostProduct, description="host product with photographs or illustrations"
    )
    user_interface: Text = Field(None, description="user interface provided to the deployer")
    instructions_for_use: Text = Field(None, description="instructions for use for the deployer")
    development_methods: Text = Field(None, description="development methods and steps, tools used")
    third_parties: Text = Field(
        None, description="pre-trained systems, third-party components and suppliers used, and their terms"
    )
    design_specifications: Text = Field(
        None, description="design choices and rationale, what the system optimises, trade-offs"
    )
    data_governance: Text = Field(
        None, description="data collection, selection, labelling and cleaning; known gaps and assumptions"
    )
    human_oversight: Text = Field(None, description="human oversight measures and their assessment")
    predetermined_changes: Text = Field(
        None, description="pre-determined changes to the system and how compliance is kept through them"
    )
    test_sign_off: list[SignOff] = Field(
        default_factory=list, description="persons who signed the validation and test reports"
    )
    cybersecurity: Text = Field(None, description="cybersecurity measures of the deployed system")
    capabilities_and_limitations: Text = Field(
        None, description="capabilities and limitations in performance, degree of accuracy for groups"
    )
    foreseeable_risks: Text = Field(
        None, description="foreseeable unintended outcomes and sources of risk to health, safety and rights"
    )
    metrics_rationale: Text = Field(None, description="why the performance metrics chosen are appropriate")
    risk_management: Text = Field(None, description="the risk management system (Art. 9)")
    harmonised_standards: list[str] = Field(
        default_factory=list, description="harmonised standards applied, or other solutions used"
    )
    declaration_of_conformity: Text = Field(
        None, description="the EU declaration of conformity (a copy or its reference)"
    )
    post_market_monitoring_plan: Text = Field(
        None, description="the post-market monitoring system and plan (Art. 72)"
    )
    impact_assessment: Text = Field(None, description="assessment of impacts on individuals and society")
    environmental_impact: Text = Field(None, description="energy use and environmental impact")


def describe_field(name: str) -> str:
    """Return the human description of a system.yaml field."""
    return SystemDescription.model_fields[name].description or name


def field_value(system: SystemDescription, name: str) -> str | None:
    """Return a field as display text, or None when the provider left it empty."""
    value: Any = getattr(system, name)
    if isinstance(value, BaseModel):
        parts = [
            f"{key.replace('_', ' ')}: {', '.join(v) if isinstance(v, list) else v}"
            for key, v in value.model_dump().items()
            if v
        ]
        return "; ".join(parts) or None
    if isinstance(value, list):
        items = [
            ", ".join(str(v) for v in entry.model_dump().values()) if isinstance(entry, BaseModel) else entry
            for entry in value
        ]
        return "; ".join(items) or None
    return (value.strip() or None) if isinstance(value, str) else None


def template_text() -> str:
    """Return the commented system.yaml template shipped with trustai."""
    return (resources.files("trustai.reports") / "templates" / "system.yaml").read_text(encoding="utf-8")


def write_template(path: Path) -> None:
    """Write the template to ``path``; never overwrites (TrustaiUserError when it exists)."""
    path = Path(path)
    if path.exists():
        raise TrustaiUserError("file already exists", where=str(path), fix="choose a new file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(template_text(), encoding="utf-8")


def load_system(path: Path) -> tuple[SystemDescription, str]:
    """Parse and validate ``path``; return the description and the file's sha256.

    Raises TrustaiUserError naming ``file:line`` for unreadable files, invalid YAML, unknown keys and
    wrong types.
    """
    path = Path(path)
    if not path.is_file():
        raise TrustaiUserError(
            "system description not found",
            where=str(path),
            fix="write one with `trustai report --init-system system.yaml` and fill it in",
        )
    data = path.read_bytes()
    if len(data) > MAX_SYSTEM_BYTES:
        raise TrustaiUserError(f"system.yaml is larger than {MAX_SYSTEM_BYTES} bytes", where=str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TrustaiUserError("system.yaml is not UTF-8 text", where=str(path)) from None
    node, raw = read_yaml(text, str(path))
    if raw is None:
        return SystemDescription(), sha256_hex(data)
    if not isinstance(raw, dict):
        raise TrustaiUserError(
            "system.yaml must be a mapping of field: value", where=str(path), fix="start from --init-system"
        )
    try:
        return SystemDescription.model_validate(raw), sha256_hex(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        raise TrustaiUserError(
            f"{dotted(loc) or '(top level)'}: {err['msg']}",
            where=f"{path}:{line_of(line_map(node), loc)}",
            fix="see the template written by `trustai report --init-system FILE` for the fields",
        ) from None
