"""Hardware profile data files (one YAML file per profile), installed as ``slt_deploy.hardware_profiles``."""
