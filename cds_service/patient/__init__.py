"""The patient: one immutable record per hook call, and everything needed to read it.

``model`` holds the record's types, ``build`` fills them from raw FHIR JSON, ``classify`` turns
medications, conditions and procedures into facts using ``terminology`` (code sets and names),
``units`` normalises lab values and ``analytes`` is the one table of laboratory analytes.
"""
