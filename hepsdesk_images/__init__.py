"""hepsdesk's image catalogue and what is made from it.

``catalogue.yaml`` names, per beamline image, its software (pinned), its GUI applications and
its sample data. ``store`` builds the dev cloud's images from it (environments in a
content-addressed store outside the clone), ``recipes`` the production diskimage-builder
elements; the Glance properties, and so the spawn page's cards, come from ``catalogue``.
"""
