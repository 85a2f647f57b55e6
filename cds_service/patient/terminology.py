"""Code sets and unit factors: the one source of truth for every code the service matches.

Every code here comes from ../shared/reference/terminology.md (confidence A or B) unless a
comment names another public source (docs/clinical/codes.md lists them). Never add a code from
memory. Drugs are recognised by code first, at every level a system has: RxNorm (the hand table,
then the generated sandbox table), ATC families by the WHO hierarchy (the generated ATC table),
NDC (the generated NLM table), SNOMED CT and dm+d; then by the names, brands, spellings and
shorthand of data/synonyms*.toml, and a card built on a text match says so.

Everything is a frozenset or a dict so that a lookup costs one hash, whatever the patient size.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache

from cds_service.patient import text_match
from cds_service.patient.analytes import ANALYTES
from cds_service.patient.analytes import LOINC_TO_ANALYTE as LOINC_TO_ANALYTE  # re-exported
from cds_service.patient.atc_table import atc_name
from cds_service.patient.ndc_table import NdcProduct, ndc_product
from cds_service.patient.rxnorm_table import brand_classes, generated_drug
from cds_service.patient.text_match import ConditionTextMatch, DrugTextMatch

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
# The WHO's ICD-10 (HL7 terminology, http://hl7.org/fhir/sid/icd-10) and Germany's ICD-10-GM
# (the German FHIR base profiles' URI, e.g. the GECCO and MII value sets). Their codes are read
# only where their meaning is the ICD-10-CM code's (``INTERNATIONAL_ICD10_CODES``).
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
# HL7 FHIR's system for the US National Drug Code; its OID 2.16.840.1.113883.6.69 (both seen in
# public FHIR code tables, e.g. a FHIR client's code-system table listing
# ['http://hl7.org/fhir/sid/ndc', 'urn:oid:2.16.840.1.113883.6.69'], and SPL validators).
NDC = "http://hl7.org/fhir/sid/ndc"
UCUM = "http://unitsofmeasure.org"
# ICD-10-PCS as written in the VSAC expansions (terminology.md section 5).
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
# HL7 THO canonical URI of CPT (CodeSystem-CPT, https://terminology.hl7.org/CodeSystem-CPT.html).
CPT = "http://www.ama-assn.org/go/cpt"

# Laboratory analytes by LOINC code: the codes live in the analyte table (analytes.py); these are
# views of it by analyte (searched codes, and codes only read) and by code.
LAB_LOINC: dict[str, frozenset[str]] = {a.key: a.loinc for a in ANALYTES.values() if a.loinc}
EXTRA_LAB_LOINC: dict[str, frozenset[str]] = {a.key: a.extra_loinc for a in ANALYTES.values() if a.extra_loinc}


# Alternative spellings of the code-system URIs seen in real data (OIDs from terminology.md
# section 5; the German ATC URI from the traps, section 6).
SYSTEM_ALIASES: dict[str, str] = {
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    "urn:oid:2.16.840.1.113883.6.73": ATC,
    "urn:oid:2.16.840.1.113883.6.69": NDC,
    # RxNorm's OID (public FHIR and CDA code tables: RXNORM_OID = "2.16.840.1.113883.6.88").
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "http://fhir.de/CodeSystem/bfarm/atc": ATC,
    "http://fhir.de/CodeSystem/dimdi/atc": ATC,
    "http://hl7.org/fhir/sid/icd-10-pcs": ICD10PCS,
}


def canonical_system(system: object) -> str | None:
    if not isinstance(system, str):
        return None
    system = system.strip().rstrip("/")
    return SYSTEM_ALIASES.get(system, system)


# ------------------------------------------------------------------------------------------
# Medications: RxNorm (IN, PIN, MIN, SCD) and ATC -> drug classes (record.DRUG_CLASSES)
# ------------------------------------------------------------------------------------------

CALCIUM = frozenset({"calcium_binder"})
CALCIUM_D = frozenset({"calcium_binder", "nutritional_vitamin_d"})
CALCIUM_MG = frozenset({"calcium_binder", "magnesium"})
CALCIUM_D_MG = frozenset({"calcium_binder", "nutritional_vitamin_d", "magnesium"})
VKA = frozenset({"vka"})
ACTIVE_D = frozenset({"active_vitamin_d"})
NUTRITIONAL_D = frozenset({"nutritional_vitamin_d"})
NON_CALCIUM_BINDER = frozenset({"non_calcium_binder"})
ALUMINIUM = frozenset({"aluminium_binder"})
ALUMINIUM_MG = frozenset({"aluminium_binder", "magnesium"})
DOAC = frozenset({"doac"})
CALCIMIMETIC = frozenset({"calcimimetic"})
THIOSULFATE = frozenset({"sodium_thiosulfate"})
IRON = frozenset({"iron"})
MAGNESIUM = frozenset({"magnesium"})
# A code we recognise as NOT belonging to any class (a trap): matched, so text is not consulted.
NO_CLASS: frozenset[str] = frozenset()


def _codes(classes: frozenset[str], *codes: str) -> dict[str, frozenset[str]]:
    return dict.fromkeys(codes, classes)


RXNORM_CLASSES: dict[str, frozenset[str]] = {
    # --- calcium salts (1a, 1b) ---
    **_codes(CALCIUM, "1895", "1897", "214342", "47613"),  # calcium; carbonate; acetate; citrate
    **_codes(CALCIUM, "359296", "197433", "428703", "1099804"),  # calcium acetate SCDs
    **_codes(CALCIUM, "308907", "282465", "237420", "198527"),  # calcium carbonate SCDs
    **_codes(CALCIUM, "198538", "240755"),  # calcium citrate SCDs
    # --- calcium-containing combinations (1c): real calcium loads, antacids included ---
    **_codes(CALCIUM_D, "608343", "152770", "1310948"),  # Ca carbonate / cholecalciferol
    **_codes(CALCIUM_D, "1007835", "1005706", "898694"),  # Ca citrate / cholecalciferol
    **_codes(CALCIUM_D, "1008264", "1001409"),  # Ca carbonate / ergocalciferol
    **_codes(CALCIUM_D, "1007512", "485550"),  # Ca citrate / ergocalciferol
    **_codes(CALCIUM_MG, "214347", "1438105", "242623", "476549"),  # Ca carbonate / Mg hydroxide
    **_codes(CALCIUM_MG, "691015", "476553", "1649510"),  # + simethicone
    **_codes(CALCIUM_MG, "214346", "308895", "2601097"),  # Ca carbonate / Mg carbonate
    **_codes(CALCIUM_MG, "821119", "1112810", "428634"),  # Ca carbonate / Mg oxide
    **_codes(CALCIUM_D_MG, "1007068", "1001679"),  # Ca carbonate / cholecalciferol / Mg oxide
    **_codes(CALCIUM_MG, "729490", "1245383"),  # Ca carbonate / Mg chloride
    **_codes(CALCIUM_D_MG, "1008035", "804614"),  # Ca citrate / cholecalciferol / Mg citrate
    **_codes(CALCIUM_MG, "691005", "283641"),  # Ca carbonate / famotidine / Mg hydroxide
    **_codes(CALCIUM, "645048", "403828", "1492387"),  # Ca carbonate / simethicone
    **_codes(CALCIUM_D, "1244924", "1007378", "1244936", "1001691"),  # Ca carb / D3 / vit K1
    **_codes(CALCIUM_D, "1789538", "1789539"),  # cholecalciferol / tricalcium phosphate
    **_codes(CALCIUM, "817958", "1722689"),  # aspirin / calcium carbonate
    # Trap 5: calcium acetate in aluminium-sulfate topical solutions is not a calcium load.
    **_codes(NO_CLASS, "1292923", "1250234"),
    # --- vitamin K antagonists (warfarin; acenocoumarol/phenprocoumon codes are CPIC-only) ---
    **_codes(VKA, "11289", "114194"),
    **_codes(VKA, "855332", "855288", "855302", "855312", "855318", "855324", "855338", "855344", "855296"),
    # --- active vitamin D sterols (RxNorm writes micrograms as MG decimals) ---
    **_codes(ACTIVE_D, "1894", "308867", "308868", "308869", "313932"),  # calcitriol
    **_codes(
        ACTIVE_D, "73710", "577315", "577317", "577324", "351154", "200321", "1736931", "1736919", "1807896"
    ),  # paricalcitol
    **_codes(ACTIVE_D, "11516", "406503", "858262", "310023", "282609", "1790208", "1790219"),  # doxercalciferol
    **_codes(ACTIVE_D, "1889", "1855066"),  # calcifediol (record.DRUG_CLASSES groups it here)
    # --- nutritional vitamin D: NOT an active sterol ---
    **_codes(NUTRITIONAL_D, "2418", "199362", "705728"),  # cholecalciferol
    **_codes(NUTRITIONAL_D, "4018", "1367410"),  # ergocalciferol
    # --- non-calcium phosphate binders (IN and both sevelamer PINs) ---
    **_codes(
        NON_CALCIUM_BINDER, "214824", "660890", "237125", "749206", "861375", "861370", "857224", "857216"
    ),  # sevelamer
    **_codes(NON_CALCIUM_BINDER, "234416", "477347", "642452", "602635", "1551885", "1551881"),  # lanthanum carbonate
    **_codes(NON_CALCIUM_BINDER, "1594675", "1594680"),  # ferric citrate
    **_codes(NON_CALCIUM_BINDER, "1484283", "1484289"),  # sucroferric oxyhydroxide
    # --- aluminium hydroxide SCDs (the IN is unconfirmed); 243463 also holds Mg hydroxide ---
    **_codes(ALUMINIUM, "307746", "237870", "245001", "252203"),
    # These also hold a magnesium salt (their RxNorm names, as the generated table reads them).
    **_codes(ALUMINIUM_MG, "243463", "307747", "308072", "731000"),
    # --- DOACs (trap 1: apixaban IN 1364430, rivaroxaban IN 1114195; never the reverse) ---
    **_codes(DOAC, "1364430", "1364435", "1364445", "1992427"),  # apixaban
    **_codes(DOAC, "1114195", "1114198", "1232082", "1232086", "2059015", "2588062", "1549682"),  # rivaroxaban
    # --- calcimimetics ---
    **_codes(CALCIMIMETIC, "407990", "432402", "432401", "432400"),  # cinacalcet
    **_codes(CALCIMIMETIC, "1876119", "1876137", "1876135", "1876127"),  # etelcalcetide
    # --- sodium thiosulfate (trap 4: PIN 36726, IN "thiosulfate" 1546411) ---
    **_codes(THIOSULFATE, "36726", "1546411", "237832", "2618749"),
    "312877": NO_CLASS,  # trap 5: salicylic acid / sodium thiosulfate lotion
    # --- iron ---
    **_codes(IRON, "90176", "24909", "261435", "473387", "5992", "1433693", "2274394"),
    **_codes(IRON, "1741261", "1741267", "1741270", "242761", "860605", "311144"),
    # --- magnesium ---
    **_codes(MAGNESIUM, "6574", "6582", "6581", "198741", "311431", "253017", "204760"),
}

# Ingredient names of the RxNorm IN/PIN codes above (terminology.md 1a), for a drug whose coding
# carries no display. Trap 1: apixaban is 1364430 and rivaroxaban 1114195, never the reverse.
RXNORM_INGREDIENT_NAMES: dict[str, str] = {
    "1895": "calcium",
    "1897": "calcium carbonate",
    "214342": "calcium acetate",
    "47613": "calcium citrate",
    "214824": "sevelamer",
    "660890": "sevelamer carbonate",
    "237125": "sevelamer hydrochloride",
    "234416": "lanthanum carbonate",
    "1594675": "ferric citrate",
    "1484283": "sucroferric oxyhydroxide",
    "11289": "warfarin",
    "114194": "warfarin sodium",
    "1364430": "apixaban",
    "1114195": "rivaroxaban",
    "1894": "calcitriol",
    "73710": "paricalcitol",
    "11516": "doxercalciferol",
    "1889": "calcifediol",
    "2418": "cholecalciferol",
    "4018": "ergocalciferol",
    "407990": "cinacalcet",
    "1876119": "etelcalcetide",
    "36726": "sodium thiosulfate",
    "1546411": "thiosulfate",
    "24909": "iron sucrose",
    "261435": "sodium ferric gluconate complex",
    "473387": "ferumoxytol",
    "5992": "iron-dextran complex",
    "1433693": "ferric carboxymaltose",
    "2274394": "ferric derisomaltose",
    "90176": "iron",
    "6582": "magnesium oxide",
    "6581": "magnesium hydroxide",
    "6574": "magnesium",
}

ATC_CLASSES: dict[str, frozenset[str]] = {
    # Calcium carbonate has no V03AE code (trap 6): it is A12AA04 (supplement) / A02AC01 (antacid).
    **_codes(CALCIUM, "A12AA04", "A02AC01", "A12AA13", "V03AE07"),
    "A12AA20": CALCIUM,  # calcium (different salts in combination)
    "A12AX": CALCIUM,  # calcium, combinations with vitamin D and/or other drugs
    "V03AE04": CALCIUM_MG,  # calcium acetate and magnesium carbonate
    # V03AE also holds potassium binders (trap 6): recognised, and in no class.
    **_codes(NO_CLASS, "V03AE01", "V03AE09", "V03AE10"),
    **_codes(NON_CALCIUM_BINDER, "V03AE02", "V03AE03", "V03AE08", "V03AE05"),
    **_codes(VKA, "B01AA03", "B01AA07", "B01AA04", "B01AA02"),
    # Active vitamin D is split across A11CC and H05BX; calcifediol has two codes.
    **_codes(ACTIVE_D, "A11CC04", "A11CC03", "A11CC06", "H05BX02", "H05BX03", "H05BX05"),
    "D05AX03": NO_CLASS,  # topical calcitriol (psoriasis): not a systemic sterol
    **_codes(NUTRITIONAL_D, "A11CC05", "A11CC55", "A11CC01"),
    "A02AB01": ALUMINIUM,
    **_codes(DOAC, "B01AF02", "B01AF01", "B01AF51"),
    **_codes(CALCIMIMETIC, "H05BX01", "H05BX04"),
    "V03AB06": THIOSULFATE,
    # Parenteral iron is only B03AC in the current WHO index; B03AB01/02 are oral irons.
    # Ferric *sodium* citrate B03AB01 is not the binder ferric citrate V03AE08.
    **_codes(IRON, "B03AC", "B03AB01", "B03AB02"),
    "V08CB03": NO_CLASS,  # iron oxide nanoparticles: MRI contrast, not iron therapy
    **_codes(MAGNESIUM, "A12CC10", "A02AA02", "A06AD02", "A02AA04", "G04BX01"),
}


# ATC families (clinical review F21; issue 19): a drug is recognised by where its code sits in the
# WHO ATC hierarchy, not only by a listed code. The codes and names of these groups come from the
# generated table ``data/atc_generated.json`` (atc_table.py: the WHO ATC/DDD index, WHOCC, as
# published in github fabkury/atcd; provenance in the file). For each group:
#
# * ``default``: the classes of every member, a code WHO adds later included (B01AA is the whole
#   vitamin K antagonist family: fluindione B01AA12 as much as warfarin B01AA03);
# * ``by_name``: the member's WHO name is read by the drug-name matcher (synonyms.toml), so a
#   mixed group is split by what each substance is: A11CC holds nutritional vitamin D
#   (ergocalciferol, colecalciferol) beside the active sterols (alfacalcidol, calcitriol,
#   calcifediol, dihydrotachysterol); H05BX holds calcimimetics (cinacalcet, etelcalcetide,
#   evocalcet) beside sterols (paricalcitol, doxercalciferol, calcifediol); V03AE holds potassium
#   binders beside phosphate binders; A12AA holds parenteral calcium (gluconate, chloride) beside
#   oral salts. A member whose name the matcher cannot class gets the default (None: not
#   recognised by its code, so its text is read).
#
# An exact code in ATC_CLASSES always wins over its family.
@dataclass(frozen=True)
class AtcFamily:
    default: frozenset[str] | None
    by_name: bool = False


ATC_FAMILIES: dict[str, AtcFamily] = {
    "B01AA": AtcFamily(VKA),  # Vitamin K antagonists
    "B01AF": AtcFamily(DOAC),  # Direct factor Xa inhibitors
    "A11CC": AtcFamily(None, by_name=True),  # Vitamin D and analogues
    "H05BX": AtcFamily(None, by_name=True),  # Other anti-parathyroid agents
    "H05BA": AtcFamily(NO_CLASS),  # Calcitonin preparations: a look-alike, no class
    "D05AX": AtcFamily(NO_CLASS),  # Other antipsoriatics for topical use (calcipotriol, tacalcitol)
    "V03AE": AtcFamily(None, by_name=True),  # Drugs for treatment of hyperkalemia and hyperphosphatemia
    "A12AA": AtcFamily(CALCIUM, by_name=True),  # Calcium (mineral supplements)
    "A12AX": AtcFamily(CALCIUM),  # Calcium, combinations with vitamin D and/or other drugs
    "A02AC": AtcFamily(CALCIUM),  # Calcium compounds (antacids)
    "A02AB": AtcFamily(ALUMINIUM),  # Aluminium compounds (antacids)
    "A02AA": AtcFamily(MAGNESIUM),  # Magnesium compounds (antacids)
    "A12CC": AtcFamily(MAGNESIUM),  # Magnesium (mineral supplements)
    "B03A": AtcFamily(IRON),  # Iron preparations (oral and parenteral)
}


def _atc_family(code: str) -> tuple[str, AtcFamily] | None:
    """The most specific family a code (any level) belongs to."""
    for length in (5, 4):
        family = ATC_FAMILIES.get(code[:length])
        if family is not None and len(code) >= length:
            return code[:length], family
    return None


@lru_cache(maxsize=512)
def atc_family_classes(code: str) -> frozenset[str] | None:
    """Classes of an ATC code by its family (see ``ATC_FAMILIES``); ``None`` when not a family
    member or a by-name member whose name cannot be classed."""
    found = _atc_family(code)
    if found is None:
        return None
    _, family = found
    if family.by_name:
        name = atc_name(code)
        named = match_drug_text(name) if name is not None and len(code) == 7 else None
        if named is not None:
            return named.classes
    return family.default


# SNOMED CT substances and products, and UK dm+d products (whose ids are SNOMED CT UK drug
# extension concepts), confirmed from public files (docs/clinical/codes.md gives each source):
# SNOMED International's own ATC-to-substance table (IHTSDO/snomed-fhir-cds-service
# Snomed_Substance_DDDs.tsv), the eHealth Suisse substance ValueSet (hl7ch/ch-term
# ActivePharmaceuticalIngredient.xml), the German KBV substance-to-ATC ConceptMap, the OpenSAFELY
# dm+d codelists (opensafely/shielding-evaluation codelists/opensafely-warfarin.csv and
# ...-direct-acting-oral-anticoagulants-doac.csv) and an NHS EPR's dm+d anticoagulant list
# (AppertaFoundation/openeyes). Codes seen in only one file are listed only when that file is
# SNOMED International's or a national terminology server's. A SNOMED-coded drug not listed here
# is read by its text.
SNOMED_DRUG_CLASSES: dict[str, frozenset[str]] = {
    # vitamin K antagonists: substances; "Product containing warfarin" (= dm+d VTM); dm+d VMPs
    **_codes(VKA, "372756006", "387457003", "59488002", "387260007", "79209008", "51739000"),
    "48603004": VKA,
    **_codes(VKA, "319736008", "319733000", "319734006", "375374009", "319735007", "375379004"),
    **_codes(VKA, "18290011000001102", "32751111000001103", "32751211000001109", "32751311000001101"),
    # direct oral anticoagulants: apixaban and rivaroxaban substances and dm+d VMPs
    **_codes(DOAC, "698090000", "442031002", "703907006", "703908001"),
    **_codes(DOAC, "27810711000001104", "14254711000001104", "19842111000001101", "19842211000001107"),
    # calcium salts (calcium acetate, calcium carbonate); magnesium carbonate
    **_codes(CALCIUM, "387019008", "387307005"),
    "387401007": MAGNESIUM,
    # active vitamin D sterols: calcitriol, alfacalcidol, paricalcitol, calcifediol, dihydrotachysterol
    **_codes(ACTIVE_D, "259333003", "11984007", "108946001", "259337002", "126235007"),
    "18414002": NUTRITIONAL_D,  # colecalciferol
    # non-calcium binders (sevelamer, lanthanum carbonate: the Swiss ValueSet)
    **_codes(NON_CALCIUM_BINDER, "395871000", "414571007"),
    "273944007": ALUMINIUM,  # aluminium hydroxide
    **_codes(CALCIMIMETIC, "409392004", "723539000"),  # cinacalcet, etelcalcetide
    "387209006": THIOSULFATE,  # sodium thiosulfate
}

DRUG_CODE_TABLES: dict[str, dict[str, frozenset[str]]] = {
    RXNORM: RXNORM_CLASSES,
    ATC: ATC_CLASSES,
    SNOMED: SNOMED_DRUG_CLASSES,
}


@lru_cache(maxsize=1024)
def ndc_classes(code: str) -> frozenset[str] | None:
    """Classes of an NDC (any of its written forms) from the generated NDC table: the RxNorm
    concept it is a package of, classed as its RxCUI is (the generated RxNorm table), else by
    its RxNorm name and route (a calcitriol ointment is topical: no class). ``None`` when the
    code is not in the table, or could be two products (a 10-digit code without hyphens)."""
    product = ndc_product(code)
    if product is None:
        return None
    generated = generated_drug(product.rxcui)
    if generated is not None:
        return generated.classes
    named = match_drug_text(f"{product.nonproprietary} {product.route.lower()}")
    return named.classes if named is not None else None


def _ndc_name(product: NdcProduct) -> str:
    return f"{product.nonproprietary} [{product.name}]" if product.name else product.nonproprietary


def drug_classes_for_code(system: object, code: object) -> frozenset[str] | None:
    """Classes for one coding; ``None`` when the code is unknown (so text may be consulted).

    RxNorm codes are looked up in the hand-verified table first, then in the table generated
    from the sandbox's RxNorm extract (every term type: SCD, SBD, components, dose-form groups).
    """
    canonical = canonical_system(system) or ""
    if canonical == NDC:
        return ndc_classes(code) if isinstance(code, str) else None
    table = DRUG_CODE_TABLES.get(canonical)
    if table is None or not isinstance(code, str):
        return None
    code = code.strip()
    if table is ATC_CLASSES:
        code = code.upper()
    found = table.get(code)
    if found is None and table is ATC_CLASSES:
        found = atc_family_classes(code)
    if found is None and canonical == RXNORM:
        generated = generated_drug(code)
        found = generated.classes if generated is not None else None
    return found


# Short names of the code systems, for cards ("RxNorm 197433", never a system URL).
SYSTEM_NAMES: dict[str, str] = {
    RXNORM: "RxNorm",
    ATC: "ATC",
    NDC: "NDC",
    SNOMED: "SNOMED CT",
    ICD10CM: "ICD-10-CM",
    ICD10: "ICD-10",
    ICD10GM: "ICD-10-GM",
    LOINC: "LOINC",
    CPT: "CPT",
    ICD10PCS: "ICD-10-PCS",
}


def system_name(system: object) -> str:
    """A code system's short name ("RxNorm"); an unknown system is named as the EHR sent it."""
    canonical = canonical_system(system)
    if canonical is None:
        return "code"
    return SYSTEM_NAMES.get(canonical, canonical)


def drug_name_for_code(system: object, code: object) -> str | None:
    """The drug a code names, in words, from the service's own tables (RxNorm: the hand-verified
    ingredient names, then the generated table; ATC: the WHO name); ``None`` when unknown."""
    canonical = canonical_system(system)
    if not isinstance(code, str) or not code.strip():
        return None
    code = code.strip()
    if canonical == RXNORM:
        if code in RXNORM_INGREDIENT_NAMES:
            return RXNORM_INGREDIENT_NAMES[code]
        generated = generated_drug(code)
        return generated.name if generated is not None else None
    if canonical == ATC:
        return atc_name(code)
    if canonical == NDC:
        product = ndc_product(code)
        return _ndc_name(product) if product is not None else None
    return None


def code_ingredients(system: object, code: object) -> tuple[str, ...]:
    """Ingredient names (lower case) of a drug code, when the tables know them: RxNorm (every
    level), an ATC substance code (its WHO name), an NDC (its RxNorm concept's ingredients)."""
    canonical = canonical_system(system)
    if not isinstance(code, str) or not code.strip():
        return ()
    code = code.strip()
    if canonical == RXNORM:
        return rxnorm_ingredients(code)
    if canonical == ATC and len(code) == 7:
        name = atc_name(code)
        return (name.lower(),) if name is not None else ()
    if canonical == NDC:
        product = ndc_product(code)
        if product is None:
            return ()
        return rxnorm_ingredients(product.rxcui) or tuple(s.lower() for s in product.substances)
    return ()


def rxnorm_ingredients(code: str) -> tuple[str, ...]:
    """Ingredient names (lower case) of an RxNorm code, when known."""
    code = code.strip()
    if code in RXNORM_INGREDIENT_NAMES:
        return (RXNORM_INGREDIENT_NAMES[code],)
    generated = generated_drug(code)
    return generated.ingredients if generated is not None else ()


# ------------------------------------------------------------------------------------------
# Drug names in text: the synonym data of data/synonyms.toml (text_match.py), then the brands
# of the generated RxNorm table. Never the bare word "calcium" (leucovorin, statin and docusate
# calcium, calcium pantothenate and polycarbophil are not calcium loads).
# ------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _brand_pattern() -> re.Pattern[str]:
    """Every brand of the generated RxNorm table (4 letters or more), as whole words."""
    brands = sorted((b for b in brand_classes() if len(b) >= 4), key=len, reverse=True)
    return re.compile(r"(?<![\w-])(" + "|".join(re.escape(b) for b in brands) + r")(?![\w-])", re.IGNORECASE)


# The longest text the name matcher reads (a drug or problem name is far shorter): a longer one is
# read to its last whole word within this many characters, and the cards say so. It bounds the
# work one text can cost, and the bytes the caches below can hold (each key is at most this long).
MAX_MATCHED_TEXT = 300


def bounded_text(text: str) -> tuple[str, bool]:
    """``text`` cut to ``MAX_MATCHED_TEXT`` characters at a word boundary, and whether it was cut
    (never in the middle of a word: a cut stem must not read as a truncated drug name)."""
    if len(text) <= MAX_MATCHED_TEXT:
        return text, False
    cut = text[: MAX_MATCHED_TEXT + 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > MAX_MATCHED_TEXT // 2 else cut[:MAX_MATCHED_TEXT]).rstrip(), True


# Characters the matcher has read in this thread (answers from its caches cost nothing): the
# record builder reads it to keep one call's text work within a budget (build.CALL_TEXT_BUDGET).
_SPENT = threading.local()


def text_spent() -> int:
    """Characters this thread has sent to the name matcher so far (cache misses only)."""
    spent: int = getattr(_SPENT, "chars", 0)
    return spent


def _spend(text: str) -> None:
    _SPENT.chars = text_spent() + len(text)


# Problem lists and medication names repeat across calls ("End-stage renal disease", "calcium
# acetate 667 MG Oral Tablet"): the answers for the most recent texts are kept (bounded, in
# process memory only), so a typical call pays the matcher's cost for no text it has seen.
_TEXT_CACHE = 8192


def match_drug_text(text: str) -> DrugTextMatch | None:
    """What a drug's text names: the synonym data (names, brands, abbreviations, close spellings,
    false friends guarded) first, then the brands of the generated RxNorm table. A text longer
    than ``MAX_MATCHED_TEXT`` is read to that length (``bounded_text``)."""
    return _match_drug_text(bounded_text(text)[0])


@lru_cache(maxsize=_TEXT_CACHE)
def _match_drug_text(text: str) -> DrugTextMatch | None:
    _spend(text)
    found = text_match.match_drug_text(text)
    if found is not None or text_match.names_false_friend(text):
        return found
    brand = _brand_pattern().search(text)
    if brand is None:
        return None
    classes = brand_classes()[brand.group(1).lower()]
    return DrugTextMatch(classes, brand.group(1).lower(), brand.group(1), "brand", None)


def warm_up() -> None:
    """Load the generated RxNorm table and the synonym data now (start-up), not in a hook call."""
    generated_drug("0")
    _brand_pattern()
    text_match.match_drug_text("calcium acetate")
    text_match.match_condition_text("calciphylaxis")


def match_condition_text(text: str) -> tuple[ConditionTextMatch, ...]:
    """The condition kinds a problem-list or procedure text names (synonym data; negations kept
    and flagged), read to ``MAX_MATCHED_TEXT`` characters."""
    return _match_condition_text(bounded_text(text)[0])


@lru_cache(maxsize=_TEXT_CACHE)
def _match_condition_text(text: str) -> tuple[ConditionTextMatch, ...]:
    _spend(text)
    return text_match.match_condition_text(text)


def drug_classes_for_text(text: str) -> frozenset[str]:
    """Classes named in a drug's text; empty when nothing matched."""
    found = match_drug_text(text)
    return found.classes if found is not None else frozenset()


# ------------------------------------------------------------------------------------------
# Conditions and procedures (terminology.md section 3)
# ------------------------------------------------------------------------------------------

# ICD-10-CM E83.59 "Other disorders of calcium metabolism" is a catch-all: it means calciphylaxis
# only when the Condition's text or display names calciphylaxis (match_condition_text).
CALCIPHYLAXIS_ICD10_CATCHALL = "E83.59"
# SNOMED CT 237900002 "Calciphylaxis" is single-source (VisualDx only; terminology.md confidence C).
# A search of public code and terminology pages found no second source, so it is NOT matched as a
# code: a Condition carrying it is still recognised through its display/text ("Calciphylaxis").

CONDITION_CODES: dict[tuple[str, str], str] = {
    # kidney failure
    (SNOMED, "46177005"): "kidney_failure",  # end-stage renal disease
    (SNOMED, "236434000"): "kidney_failure",  # ESRF untreated by renal replacement therapy
    (SNOMED, "433146000"): "kidney_failure",  # CKD stage 5
    (ICD10CM, "N18.6"): "kidney_failure",
    (ICD10CM, "N18.5"): "kidney_failure",
    (ICD10CM, "I12.0"): "kidney_failure",
    (ICD10CM, "I13.11"): "kidney_failure",
    (ICD10CM, "I13.2"): "kidney_failure",
    # kidney transplant (a working graft takes a patient with an old kidney-failure entry off
    # dialysis; see PatientRecord.on_dialysis)
    (SNOMED, "236436003"): "kidney_transplant",  # ESRF with renal transplant (VSAC, terminology.md)
    # Z94.0 "Kidney transplant status": a functioning graft without a complication (T86.1- codes
    # a failed or rejected one). Confirmed on codingmcw.happycovergirlco.com/.../Z94.0,
    # medcoder.ai/icd10/code/z94.0-kidney-transplant-status and cco.us transplant-status guide.
    (ICD10CM, "Z94.0"): "kidney_transplant",
    # 737295003 "Transplanted kidney present (finding)": HL7 Switzerland ch-lab-order IG, a Swedish
    # FHIR IG value set, an OMOP concept set and an ESRD code list agree.
    (SNOMED, "737295003"): "kidney_transplant",
    # A graft that failed or is being rejected (ICD-10-CM T86.11 rejection, T86.12 failure;
    # medtrack-io/icd_code codes_t86.ex and hccbuddy.com/icd10/T86.12): not a working graft.
    (ICD10CM, "T86.11"): "kidney_transplant_failed",
    (ICD10CM, "T86.12"): "kidney_transplant_failed",
    # soft-tissue calcification (K/DOQI's binder criterion names vascular or soft-tissue
    # calcification): L94.2 "Calcinosis cutis" (medtrack-io/icd_code codes_l94.ex and a VA VistA
    # pick list). No SNOMED code for vascular calcification could be confirmed: text only.
    (ICD10CM, "L94.2"): "vascular_calcification",
    # dialysis
    (SNOMED, "236435004"): "dialysis",  # end stage renal failure on dialysis
    (SNOMED, "714152005"): "dialysis",  # CKD stage 5 on dialysis
    (SNOMED, "105502003"): "dialysis",  # dependence on renal dialysis
    (ICD10CM, "Z99.2"): "dialysis",
    # 443143006 "Dependence on hemodialysis (finding)": an ESRD code list and a CDC-derived
    # ConceptMap (FHIR-FLI Cicada IG, SnomedToCdsiObservation) agree.
    (SNOMED, "443143006"): "dialysis",
    (ICD10CM, "Z49.31"): "dialysis",  # encounter for adequacy testing for hemodialysis
    (ICD10CM, "Z49.01"): "dialysis",  # fitting of extracorporeal dialysis catheter
    (ICD10CM, "Z49.02"): "dialysis",  # fitting of peritoneal dialysis catheter
    # atrial fibrillation (I48.1 / I48.2 are headers since FY2020 but persist in older records)
    (SNOMED, "49436004"): "atrial_fibrillation",
    (SNOMED, "282825002"): "atrial_fibrillation",
    (SNOMED, "440059007"): "atrial_fibrillation",
    (SNOMED, "440028005"): "atrial_fibrillation",
    **{
        (ICD10CM, c): "atrial_fibrillation"
        for c in ("I48.0", "I48.1", "I48.11", "I48.19", "I48.2", "I48.20", "I48.21", "I48.91")
    },
    # prosthetic heart valve: Z95.2 does not say mechanical vs biological, so it counts (the safe
    # reading for a DOAC contraindication); clinical-rules.md names the *mechanical* valve as what
    # forbids a DOAC, so an explicitly biological one (Z95.3) does not.
    (ICD10CM, "Z95.2"): "prosthetic_valve",
    # Z95.4 "Presence of other heart-valve replacement": the type is not said, so it counts like
    # Z95.2 (icdlist.com/icd-10/z954; hccbuddy.com/icd10/Z95.4: "a type of prosthetic valve not
    # specified in other categories").
    (ICD10CM, "Z95.4"): "prosthetic_valve",
    # Z95.3 "Presence of xenogenic heart valve": a biological valve (terminology.md section 3 note,
    # and the Z95 child-code list on hccbuddy.com): recorded, but no DOAC contraindication.
    (ICD10CM, "Z95.3"): "bioprosthetic_valve",
    # Apixaban exclusions (docs/clinical/codes.md gives the sources): mitral stenosis, rheumatic or
    # not (I05.0, I05.2 with insufficiency, I34.2 nonrheumatic); antiphospholipid syndrome (D68.61)
    # and lupus anticoagulant syndrome (D68.62); never D68.312 (antiphospholipid antibody with a
    # *bleeding* disorder). I08.0 (mitral and aortic valve disease) is left out: it does not say
    # stenosis.
    (ICD10CM, "I05.0"): "mitral_stenosis",
    (ICD10CM, "I05.2"): "mitral_stenosis",
    (ICD10CM, "I34.2"): "mitral_stenosis",
    (SNOMED, "79619009"): "mitral_stenosis",  # mitral valve stenosis (disorder)
    (SNOMED, "838450006"): "mitral_stenosis",  # severe mitral valve stenosis (one source; a child of the above)
    (ICD10CM, "D68.61"): "antiphospholipid_syndrome",
    (ICD10CM, "D68.62"): "antiphospholipid_syndrome",
    (SNOMED, "26843008"): "antiphospholipid_syndrome",
    (SNOMED, "239892009"): "antiphospholipid_syndrome",  # primary antiphospholipid syndrome
    (SNOMED, "239895006"): "antiphospholipid_syndrome",  # secondary antiphospholipid syndrome
    # Sevelamer / lanthanum exclusions: ICD-10-CM K56 "Paralytic ileus and intestinal obstruction
    # without hernia" (K56.0 paralytic ileus, K56.41 faecal impaction, K56.6- other and unspecified
    # obstruction, K56.7 ileus).
    **{
        (ICD10CM, c): "bowel_obstruction"
        for c in ("K56.0", "K56.41", "K56.60", "K56.600", "K56.601", "K56.609", "K56.69", "K56.690", "K56.699", "K56.7")
    },
    (SNOMED, "81060008"): "bowel_obstruction",  # intestinal obstruction (disorder)
    # E89.2 "Postprocedural hypoparathyroidism": after a parathyroidectomy (or thyroid surgery),
    # calcium can fall steeply: the hypocalcaemia guard of C1/C3.
    (ICD10CM, "E89.2"): "parathyroidectomy",
    **{
        (system, code): kind
        for (system, code), kind in (
            # ICD-10-GM: N18.5 "Chronische Nierenkrankheit, Stadium 5" and Z99.2 "Langzeitige
            # Abhängigkeit von Dialyse bei Niereninsuffizienz" (the GECCO value sets' FSH, public), I48.0
            # "Vorhofflimmern, paroxysmal", I48.1 "... persistierend", I48.2 "... permanent" (several
            # public German code lists; I48.3/I48.4 are flutter, I48.9 "Vorhofflimmern und
            # Vorhofflattern, nicht näher bezeichnet" includes flutter and is left out).
            ((ICD10GM, "N18.5"), "kidney_failure"),
            ((ICD10GM, "Z99.2"), "dialysis"),
            ((ICD10GM, "I48.0"), "atrial_fibrillation"),
            ((ICD10GM, "I48.1"), "atrial_fibrillation"),
            ((ICD10GM, "I48.2"), "atrial_fibrillation"),
            # WHO ICD-10 2019: N18.5 "Chronic kidney disease, stage 5" (the WHO 2019 table quoted in the
            # German Wikipedia article on chronic kidney failure). In WHO ICD-10 and ICD-10-GM stage 5 also
            # covers end-stage disease; unlike ICD-10-CM's N18.6 it does not imply dialysis.
            ((ICD10, "N18.5"), "kidney_failure"),
        )
    },
}

# End-stage renal disease, as these code systems use it: ICD-10-CM N18.6 "End stage renal disease"
# includes chronic kidney disease requiring chronic dialysis (N18.5 "stage 5" excludes it; sources
# in docs/clinical/codes.md); SNOMED CT 46177005 is the same concept, with its own child for
# kidney failure *untreated* by renal replacement therapy (236434000), which is not here. A
# kidney-failure entry with one of these codes (or these words: ESRD, ESKD, ESRF, end-stage ...,
# CKD 5D) implies dialysis, unless its words say otherwise ("untreated by RRT", "pre-dialysis",
# "conservative care"). A functioning transplant is told apart by the record (PatientRecord).
ESKD_CODES: frozenset[tuple[str, str]] = frozenset({(SNOMED, "46177005"), (ICD10CM, "N18.6")})
_DIALYSIS_IMPLIED_WORDS = re.compile(
    r"\b(?:ESRD|ESKD|ESRF)\b|\bend[\s-]*stage\s+(?:renal|kidney)\s+(?:disease|failure)\b"
    r"|\b(?:CKD|stage|G)\s*-?\s*(?:5|V)\s*-?\s*D\b",
    re.IGNORECASE,
)
_NOT_DIALYSED_WORDS = re.compile(
    r"\buntreated\b|\bnot\s+(?:on|yet\s+on|receiving|requiring)\s+(?:dialysis|RRT|KRT|renal\s+replacement|kidney\s+replacement)"
    r"|\bno\s+(?:dialysis|RRT|KRT)\b|\bpre-?\s*dialysis|\bnon-?\s*dialysis|\bconservative|\bsupportive\s+care"
    r"|\bwithout\s+(?:dialysis|RRT|KRT|renal\s+replacement|kidney\s+replacement)|\bdeclined\s+dialysis"
    r"|\bnot\s+dialy[sz]ed",
    re.IGNORECASE,
)


def kidney_failure_implies_dialysis(system: object, code: object, text: str) -> bool:
    """Whether a kidney-failure entry implies dialysis: by its code when it was recognised by one
    (end-stage renal disease, not CKD 5 or "stage 5 or ESRD" combinations such as I12.0), by its
    words otherwise (ESRD, CKD 5D); never when its words say it is untreated or pre-dialysis."""
    if _NOT_DIALYSED_WORDS.search(text):
        return False
    if isinstance(system, str) and isinstance(code, str):
        canonical = canonical_system(system)
        return (canonical, normalise_code(canonical, code)) in _ESKD_INDEX
    return bool(_DIALYSIS_IMPLIED_WORDS.search(text))


# Dialysis procedures (Procedure.code). A Procedure counts only when recent (classify.py).
DIALYSIS_PROCEDURE_CODES: frozenset[tuple[str, str]] = frozenset(
    {
        (SNOMED, "302497006"),  # hemodialysis
        (SNOMED, "233575001"),  # intermittent hemodialysis
        (SNOMED, "67970008"),  # hemodialysis maintenance at home
        (SNOMED, "34897002"),  # hemodialysis maintenance in hospital
        (SNOMED, "708932005"),  # emergency hemodialysis
        # 265764009 "Renal dialysis (procedure)": Synthea's dialysis code (the bulk patient in
        # ../shared/fhir-data); the same code and display appear in several public sources, e.g.
        # a public LOINC/SNOMED usage table of Synthea output and Synthea-based dialysis counters.
        (SNOMED, "265764009"),
        (CPT, "90935"),
        (CPT, "90937"),
        # Peritoneal dialysis and other dialysis: VSAC "Dialysis Services" (2.16.840.1.113883.3.464.
        # 1003.109.12.1013) and "Peritoneal Dialysis" (2.16.840.1.113883.3.526.3.1084), two stewards,
        # both in cqframework/ecqm-content-qicore-2024 input/vocabulary/valueset/external/.
        (SNOMED, "71192002"),  # peritoneal dialysis
        (SNOMED, "238318009"),  # continuous ambulatory peritoneal dialysis
        (SNOMED, "428648006"),  # automated peritoneal dialysis
        (SNOMED, "238319001"),  # continuous cycling peritoneal dialysis
        (SNOMED, "225230008"),  # chronic peritoneal dialysis
        (SNOMED, "238321006"),  # intermittent peritoneal dialysis
        (SNOMED, "238322004"),  # tidal peritoneal dialysis
        (SNOMED, "238323009"),  # night-time intermittent peritoneal dialysis
        (SNOMED, "676002"),  # peritoneal dialysis including cannulation
        (SNOMED, "14684005"),  # peritoneal dialysis excluding cannulation
        (SNOMED, "108241001"),  # dialysis procedure (VSAC 1013 and an OMOP-based study window)
        (CPT, "90945"),  # dialysis other than haemodialysis, single evaluation
        (CPT, "90947"),  # ... repeated evaluations
        (ICD10PCS, "5A1D70Z"),
        (ICD10PCS, "5A1D80Z"),
        (ICD10PCS, "5A1D90Z"),
    }
)


def normalise_code(system: str | None, code: str) -> str:
    """ICD-10 codes arrive with and without the dot ("N18.6" / "N186"); compare dotless."""
    code = code.strip()
    if system in (ICD10CM, ICD10PCS, ICD10, ICD10GM):
        return code.replace(".", "").upper()
    return code


_CONDITION_INDEX: dict[tuple[str, str], str] = {
    (system, normalise_code(system, code)): kind for (system, code), kind in CONDITION_CODES.items()
}
_DIALYSIS_PROCEDURE_INDEX: frozenset[tuple[str, str]] = frozenset(
    (system, normalise_code(system, code)) for system, code in DIALYSIS_PROCEDURE_CODES
)


def condition_kind_for_code(system: object, code: object) -> str | None:
    system = canonical_system(system)
    if system is None or not isinstance(code, str):
        return None
    return _CONDITION_INDEX.get((system, normalise_code(system, code)))


def is_dialysis_procedure_code(system: object, code: object) -> bool:
    system = canonical_system(system)
    if system is None or not isinstance(code, str):
        return False
    return (system, normalise_code(system, code)) in _DIALYSIS_PROCEDURE_INDEX


def is_calciphylaxis_catchall(system: object, code: object) -> bool:
    return (
        canonical_system(system) == ICD10CM
        and isinstance(code, str)
        and normalise_code(ICD10CM, code) == normalise_code(ICD10CM, CALCIPHYLAXIS_ICD10_CATCHALL)
    )


_ESKD_INDEX = frozenset((system, normalise_code(system, code)) for system, code in ESKD_CODES)


# Parathyroidectomy procedures (the hypocalcaemia guard of C1/C3; sources in
# docs/clinical/codes.md): CPT 60500 parathyroidectomy or exploration of parathyroid(s), 60502
# re-exploration, 60505 with mediastinal exploration.
PARATHYROIDECTOMY_PROCEDURE_CODES: frozenset[tuple[str, str]] = frozenset(
    {(CPT, "60500"), (CPT, "60502"), (CPT, "60505")}
)
_PTX_INDEX = frozenset((system, normalise_code(system, code)) for system, code in PARATHYROIDECTOMY_PROCEDURE_CODES)


def is_parathyroidectomy_code(system: object, code: object) -> bool:
    if not isinstance(system, str) or not isinstance(code, str):
        return False
    canonical = canonical_system(system)
    return canonical is not None and (canonical, normalise_code(canonical, code)) in _PTX_INDEX
